"""Grids of runs: a grid file expanded into run specs (``spec``), each executed by one
worker function (``worker``) under a local process pool or a Ray cluster
(``executors``), with the progress line and status file of ``progress``."""
