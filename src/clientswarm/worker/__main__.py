"""``python -m clientswarm.worker``: the ``clientswarm worker`` command, for spawners."""

from clientswarm.imports import collections_paused, single_threaded_native_libraries

single_threaded_native_libraries()
with collections_paused():  # a worker's imports are on the path to its first request
    from clientswarm.worker.cli import worker_command

if __name__ == "__main__":
    worker_command(prog_name="python -m clientswarm.worker")
