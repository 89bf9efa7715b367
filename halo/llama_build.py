"""Refuse a llama.cpp build that is known to crash: one compiled with AMX kernels.

llama-cpp-python compiles llama.cpp for the machine it is installed on (-march=native).  On a CPU with
AMX (Intel Sapphire Rapids and later) that turns on ggml's AMX matrix kernels, and their matrix product
crashes the process with a segmentation fault on the first decode of small models such as SmolLM2 and
Gemma 3 270M (llama.cpp issue 20824, closed without a fix).  `scripts/setup.sh` builds without them;
a build made some other way is caught here, before any file is loaded, with a line saying how to rebuild.
"""

import functools

from ramputils.errors import UserError

REBUILD = ('CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 '
           '-mno-amx-bf16" pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python')


def amx_compiled(system_info: str) -> bool:
    """Whether llama.cpp's system-info line says the CPU backend was compiled with AMX kernels."""
    return "AMX_INT8 = 1" in system_info


@functools.cache
def check() -> None:
    """Raise a UserError when the installed llama-cpp-python carries the AMX kernels."""
    import llama_cpp

    if amx_compiled(llama_cpp.llama_print_system_info().decode(errors="replace")):
        raise UserError("this llama-cpp-python was built with llama.cpp's AMX kernels, which crash on this "
                        f"CPU (llama.cpp issue 20824); rebuild it without them: {REBUILD}")
