# A configure where oneDNN is installed but a prerequisite its CMake config requires is absent
# must still succeed, build without the oneDNN backend, and say why in one line.
#   cmake -DSOURCE_DIR=<repo> -DBINARY_DIR=<scratch> -P configure_without_onednn_prerequisites.cmake
# CMAKE_DISABLE_FIND_PACKAGE_OpenCL hides OpenCL from every find_package, oneDNN's own call
# included, where a REQUIRED find of a disabled package is an error: exactly what a missing
# ocl-icd-opencl-dev did to the configure before cmake/convgemmFindOnednn.cmake guarded it.
foreach(variable SOURCE_DIR BINARY_DIR)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "pass -D${variable}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${BINARY_DIR}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}"
          -DCMAKE_DISABLE_FIND_PACKAGE_OpenCL=ON -DCONVGEMM_BUILD_TESTS=OFF
          -DCONVGEMM_BUILD_BENCHMARKS=ON -DCONVGEMM_BUILD_EXAMPLES=OFF -DCONVGEMM_WITH_MPI=OFF
  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
file(REMOVE_RECURSE "${BINARY_DIR}")
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the configure failed (${status}):\n${output}")
endif()
if(NOT output MATCHES "convgemm: building without oneDNN: [^\n]+")
  message(FATAL_ERROR "the configure did not say it builds without oneDNN:\n${output}")
endif()
message(STATUS "${CMAKE_MATCH_0}")
if(NOT output MATCHES "oneDNN GEMM backend built: OFF")
  message(FATAL_ERROR "the oneDNN backend was built without OpenCL:\n${output}")
endif()
