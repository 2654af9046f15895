"""The web dashboard served by the management frontend under ``/dashboard`` (see :mod:`.app`)."""
