"""The llama.cpp build the tests run on is one that does not crash: no AMX kernels (llama.cpp issue 20824)."""

import llama_cpp

from halo import llama_build


def test_the_installed_build_has_no_amx_kernels():
    info = llama_cpp.llama_print_system_info().decode()
    assert "CPU :" in info  # the line the check reads is there
    assert not llama_build.amx_compiled(info), info  # scripts/setup.sh builds without AMX, even on AMX CPUs
    llama_build.check()


def test_a_build_with_amx_kernels_is_recognised():
    info = llama_cpp.llama_print_system_info().decode()
    assert llama_build.amx_compiled(info.replace("CPU : ", "CPU : AMX_INT8 = 1 | "))
