"""The end-to-end section of ``make bench``: both emulators and ``dynasync run`` as separate
processes on the real broker, timed from the moment mailboxes are enabled until every item is
on the other side (see :mod:`bench.e2e.run`)."""
