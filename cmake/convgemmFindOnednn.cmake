# Finds oneDNN (the optional GEMM backend and the benchmarks' peer) without letting it break the
# configure. A package config may itself call find_package(... REQUIRED): Debian's oneDNN is built
# with the OpenCL GPU runtime, so its dnnl-config.cmake requires OpenCL, whose development files
# (ocl-icd-opencl-dev) libdnnl-dev only recommends. A REQUIRED failure inside a config aborts the
# whole configure, QUIET or not, so the config file is located and read first, the runtimes it
# declares are looked for quietly, and it is loaded only when every one is there.
#
#   convgemm_find_onednn()
# sets CONVGEMM_ONEDNN_FOUND (oneDNN and the OpenMP it threads with: DNNL::dnnl and
# OpenMP::OpenMP_CXX exist) and, when it is false, CONVGEMM_ONEDNN_MISSING (why, in words).
include_guard(GLOBAL)

macro(convgemm_find_onednn)
  set(CONVGEMM_ONEDNN_FOUND OFF)
  set(CONVGEMM_ONEDNN_MISSING "")
  find_file(CONVGEMM_DNNL_CONFIG NAMES dnnl-config.cmake DNNLConfig.cmake
    HINTS ${dnnl_DIR}
    PATHS ${CMAKE_PREFIX_PATH} ${CMAKE_SYSTEM_PREFIX_PATH}
    PATH_SUFFIXES . lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/dnnl lib/cmake/dnnl lib64/cmake/dnnl
    NO_DEFAULT_PATH)
  if(NOT CONVGEMM_DNNL_CONFIG)
    set(CONVGEMM_ONEDNN_MISSING "oneDNN's CMake config not found (Debian: libdnnl-dev)")
  else()
    _convgemm_onednn_prerequisites("${CONVGEMM_DNNL_CONFIG}")
  endif()
  if(NOT CONVGEMM_ONEDNN_MISSING)
    find_package(dnnl CONFIG QUIET PATHS "${_convgemm_dnnl_dir}" NO_DEFAULT_PATH)
    find_package(OpenMP QUIET COMPONENTS CXX)
    if(NOT dnnl_FOUND)
      set(CONVGEMM_ONEDNN_MISSING "${CONVGEMM_DNNL_CONFIG} did not load")
    elseif(NOT OpenMP_CXX_FOUND)
      set(CONVGEMM_ONEDNN_MISSING "OpenMP for C++ not found, which oneDNN threads with")
    else()
      set(CONVGEMM_ONEDNN_FOUND ON)
    endif()
  endif()
endmacro()

# Sets CONVGEMM_ONEDNN_MISSING when a runtime that the config at `config` requires is absent.
# The runtimes are the ones oneDNN's own config declares (DNNL_GPU_RUNTIME, and
# DNNL_CPU_THREADING_RUNTIME). OpenCL is looked for with CMake's FindOpenCL, which finds the same
# header and library as the config's own module but, unlike it, stays quiet when asked to.
macro(_convgemm_onednn_prerequisites config)
  get_filename_component(_convgemm_dnnl_dir "${config}" DIRECTORY)
  file(STRINGS "${config}" _convgemm_dnnl_runtimes
       REGEX "^set\\(DNNL_(GPU_RUNTIME|CPU_THREADING_RUNTIME) ")
  if(_convgemm_dnnl_runtimes MATCHES "DNNL_GPU_RUNTIME \"OCL\"")
    find_package(OpenCL QUIET)
    if(NOT OpenCL_FOUND)
      set(CONVGEMM_ONEDNN_MISSING
          "its config requires OpenCL (its GPU runtime), not found (Debian: ocl-icd-opencl-dev)")
    endif()
  endif()
  if(_convgemm_dnnl_runtimes MATCHES "DNNL_CPU_THREADING_RUNTIME \"TBB\"")
    find_package(TBB QUIET COMPONENTS tbb)
    if(NOT TBB_FOUND)
      set(CONVGEMM_ONEDNN_MISSING "its config requires oneTBB (its threading runtime), not found")
    endif()
  endif()
endmacro()
