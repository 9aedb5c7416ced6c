"""`python -m evals.llama_cpp_server ARGS`: llama-cpp-python's server, loading with fixloop's
choice of weight repacking (`agent.backends.llama_repack`: off on AMX CPUs, where the
repacked kernels segfault). The arguments are `python -m llama_cpp.server`'s.
"""

from __future__ import annotations

import runpy

from agent.backends.llama_repack import model_params, repack_from_environment


def main() -> None:
    with model_params(repack=repack_from_environment()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
