# Finds BLIS's single-threaded build (Debian 12: libblis-serial-dev) and wraps it in the imported
# target convgemm::blis; sets CONVGEMM_BLIS_FOUND, CONVGEMM_BLIS_VERSION and, when it is not
# found, CONVGEMM_BLIS_MISSING (why, in one phrase). Debian ships neither a CMake config nor a
# pkg-config file for BLIS, hence this module.
#
# Why the serial build, and why its static archive:
#   - the packed driver runs BLIS's micro-kernels inside oneTBB tasks and never lets BLIS thread,
#     so the OpenMP and pthread builds would only bring a second threading runtime along;
#   - BLIS also exports the CBLAS and Fortran BLAS interfaces (cblas_sgemm, sgemm_, ...). Linked
#     from Debian's libblis.a, they replace OpenBLAS's wherever the archive happens to come first
#     on a program's link line, and CMake orders that line as it likes (the benchmark's once ran
#     "OpenBLAS" on BLIS's code). So the target is a copy of the archive without that
#     compatibility layer (its bla_*, cblas_* and f77_* members), made here: whatever the link
#     order, BLIS can only supply its own bli_* API. The shared libblis.so would interpose them
#     on whichever library loads later.
#   - the runtime package puts libblis.so.4 in a private directory, so a shared link would also
#     need an rpath.
# Only src/packed/blis_micro_kernel.cpp includes blis.h; the BLIS API names it uses are those of
# 0.9 (BLIS 1.0 renamed the context queries), so other versions are refused here.
# Copies BLIS's archive into the build tree without the members of its BLAS compatibility layer
# and sets `out` to the copy's path.
function(convgemm_blis_without_blas_interfaces archive out)
  set(copy "${CMAKE_BINARY_DIR}/convgemm-blis/libblis-kernels.a")
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/convgemm-blis")
  file(COPY_FILE "${archive}" "${copy}")
  execute_process(COMMAND "${CMAKE_AR}" t "${copy}" OUTPUT_VARIABLE members
                  RESULT_VARIABLE listed)
  if(NOT listed EQUAL 0)
    message(FATAL_ERROR "convgemm: '${CMAKE_AR} t ${copy}' failed (${listed})")
  endif()
  string(REGEX MATCHALL "(^|\n)(bla_|cblas_|f77_)[^\n]*" interfaces "${members}")
  list(TRANSFORM interfaces STRIP)
  if(NOT interfaces)
    message(FATAL_ERROR "convgemm: ${archive} has no bla_/cblas_/f77_ members; its layout is "
                        "not BLIS 0.9's, so its BLAS symbols cannot be left out")
  endif()
  execute_process(COMMAND "${CMAKE_AR}" d "${copy}" ${interfaces} RESULT_VARIABLE deleted)
  if(NOT deleted EQUAL 0)
    message(FATAL_ERROR "convgemm: removing BLIS's BLAS interfaces from ${copy} failed")
  endif()
  set(${out} "${copy}" PARENT_SCOPE)
endfunction()

function(convgemm_find_blis)
  set(CONVGEMM_BLIS_FOUND OFF PARENT_SCOPE)
  set(serial_dir ${CMAKE_LIBRARY_ARCHITECTURE}/blis-serial)
  find_path(CONVGEMM_BLIS_INCLUDE_DIR blis.h PATH_SUFFIXES ${serial_dir} NO_CACHE)
  find_library(CONVGEMM_BLIS_LIBRARY NAMES libblis.a PATH_SUFFIXES blis-serial ${serial_dir}
               NO_CACHE)
  if(NOT CONVGEMM_BLIS_INCLUDE_DIR OR NOT CONVGEMM_BLIS_LIBRARY)
    set(CONVGEMM_BLIS_MISSING "BLIS's serial build not found (Debian: libblis-serial-dev)"
        PARENT_SCOPE)
    return()
  endif()
  # The version is in the build's config.mk beside the library's share directory, the only
  # place the Debian package records it (blis.h has no version macro).
  find_file(config_mk config.mk
            PATHS /usr/share/blis-serial-${CMAKE_LIBRARY_ARCHITECTURE} NO_DEFAULT_PATH NO_CACHE)
  set(version "unknown")
  if(config_mk)
    file(STRINGS ${config_mk} version_line REGEX "^VERSION[ \t]*:=")
    string(REGEX REPLACE "^VERSION[ \t]*:=[ \t]*" "" version "${version_line}")
  endif()
  set(CONVGEMM_BLIS_VERSION "${version}" PARENT_SCOPE)
  if(NOT version MATCHES "^0\\.9(\\.|$)")
    set(CONVGEMM_BLIS_MISSING
        "BLIS ${version} found, but the packed driver is written against BLIS 0.9's context API"
        PARENT_SCOPE)
    return()
  endif()
  find_package(Threads REQUIRED)
  if(NOT TARGET convgemm::blis)
    convgemm_blis_without_blas_interfaces("${CONVGEMM_BLIS_LIBRARY}" kernels_archive)
    add_library(convgemm::blis STATIC IMPORTED GLOBAL)
    set_target_properties(convgemm::blis PROPERTIES
      IMPORTED_LOCATION "${kernels_archive}"
      INTERFACE_INCLUDE_DIRECTORIES "${CONVGEMM_BLIS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "Threads::Threads;m")
  endif()
  set(CONVGEMM_BLIS_FOUND ON PARENT_SCOPE)
endfunction()
