# Fails listing every C++ file of the project that clang-format would change.
file(GLOB_RECURSE sources RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/include/*.hpp" "${SOURCE_DIR}/tests/*.cpp"
     "${SOURCE_DIR}/tests/*.hpp" "${SOURCE_DIR}/bench/*.cpp" "${SOURCE_DIR}/bench/*.hpp"
     "${SOURCE_DIR}/examples/*.cpp" "${SOURCE_DIR}/tools/*.cpp" "${SOURCE_DIR}/tools/*.hpp")
set(unformatted "")
foreach(source IN LISTS sources)
  execute_process(COMMAND "${CLANG_FORMAT}" --dry-run -Werror "${SOURCE_DIR}/${source}" RESULT_VARIABLE status
                  OUTPUT_QUIET ERROR_QUIET)
  if(NOT status EQUAL 0)
    list(APPEND unformatted "${source}")
  endif()
endforeach()
list(LENGTH sources checked)
if(unformatted)
  list(JOIN unformatted "\n  " listing)
  message(FATAL_ERROR "not clang-format clean (run clang-format -i on them):\n  ${listing}")
endif()
message(STATUS "${checked} files are clang-format clean")
