# Compiler warnings and sanitizers for the project's own targets, PRIVATE so that consumers of
# the installed library never inherit them. Switched by CONVGEMM_WERROR, CONVGEMM_SANITIZE and
# CONVGEMM_BUILD_FUZZERS.
include_guard(GLOBAL)

function(convgemm_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(CONVGEMM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(CONVGEMM_SANITIZE)
    # Stop at the first UB report so that a test fails instead of printing and passing.
    set(flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
              -fno-omit-frame-pointer)
    target_compile_options(${target} PRIVATE ${flags})
    target_link_options(${target} PRIVATE ${flags})
  endif()
  if(CONVGEMM_BUILD_FUZZERS)
    # libFuzzer's coverage instrumentation (the fuzz executables link the fuzzer itself).
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()
