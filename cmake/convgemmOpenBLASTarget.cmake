# Wraps the variables of OpenBLAS's own CMake config (OpenBLAS_INCLUDE_DIRS,
# OpenBLAS_LIBRARIES; Debian's libopenblas-dev ships it) in an imported target, because that
# config defines none. Used by the build and, installed, by convgemmConfig.cmake.
include_guard(GLOBAL)

if(NOT TARGET convgemm::openblas)
  add_library(convgemm::openblas INTERFACE IMPORTED)
  set_target_properties(convgemm::openblas PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${OpenBLAS_LIBRARIES}")
endif()
