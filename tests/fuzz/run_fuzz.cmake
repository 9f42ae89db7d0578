# Builds a libFuzzer target with clang++ and fuzzes it for a bounded time;
# run with cmake -P and
#   -DCLANGXX=<clang++> -DSOURCE=<fuzz target .cpp> -DINCLUDE_DIR=<tutti include>
#   -DWORK_DIR=<scratch: binary, corpus, crash artifacts> -DSECONDS=<fuzzing time>
# Fails when the target does not compile (warnings are errors) or when the
# fuzzer finds a crash, leak, timeout or excessive allocation.
get_filename_component(name "${SOURCE}" NAME_WE)
set(binary "${WORK_DIR}/${name}")
set(corpus "${WORK_DIR}/corpus")
set(artifacts "${WORK_DIR}/artifacts")
file(MAKE_DIRECTORY "${corpus}" "${artifacts}")

# Rebuild when the fuzzer is missing or older than its source or any header.
file(GLOB_RECURSE inputs "${INCLUDE_DIR}/tutti/*.hpp")
list(APPEND inputs "${SOURCE}" "${CMAKE_CURRENT_LIST_FILE}")
set(stale FALSE)
foreach(input IN LISTS inputs)
  if(NOT EXISTS "${binary}" OR "${input}" IS_NEWER_THAN "${binary}")
    set(stale TRUE)
    break()
  endif()
endforeach()

if(stale)
  message(STATUS "building ${binary}")
  file(REMOVE "${binary}")
  execute_process(
    COMMAND
      "${CLANGXX}" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
      -fno-omit-frame-pointer -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
      -Wnull-dereference -Wimplicit-fallthrough -Werror "-I${INCLUDE_DIR}" "${SOURCE}" -o "${binary}"
    RESULT_VARIABLE status
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "compiling the fuzzer failed (${status}); -fsanitize=fuzzer needs Debian's "
                        "libclang-rt-14-dev:\n${out}")
  endif()
endif()

execute_process(COMMAND "${binary}" --write-seeds "${corpus}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "writing the seed corpus failed (${status})")
endif()

# ASan's quarantine of freed memory (256 MiB by default) would hold most of
# the RSS limit; a smaller one leaves room (settings already in ASAN_OPTIONS
# come later and win).
set(ENV{ASAN_OPTIONS} "quarantine_size_mb=64:$ENV{ASAN_OPTIONS}")
# -malloc_limit_mb: inputs are at most 4 KiB, so any single allocation of
# 16 MiB means a length field was trusted before it was checked.
execute_process(
  COMMAND "${binary}" -max_total_time=${SECONDS} -rss_limit_mb=512 -malloc_limit_mb=16 -max_len=4096 -timeout=5
          -print_final_stats=1 "-artifact_prefix=${artifacts}/" "${corpus}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  file(GLOB found "${artifacts}/*")
  list(JOIN found "\n  " listing)
  message(FATAL_ERROR "the fuzzer failed (${status}); reproduce with ${binary} <artifact>:\n  ${listing}")
endif()
