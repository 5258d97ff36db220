"""The ``slmstack`` command line; each command calls one public function."""
