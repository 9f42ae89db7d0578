# Warnings are errors in tutti's own targets (tests, benchmarks, examples,
# tools); consumers of the INTERFACE target get none of these flags.
function(tutti_project_target target)
  target_compile_options(
    ${target}
    PRIVATE -Wall
            -Wextra
            -Wpedantic
            -Wshadow
            -Wconversion
            -Wsign-conversion
            -Wnon-virtual-dtor
            -Wold-style-cast
            -Woverloaded-virtual
            -Wnull-dereference
            -Wimplicit-fallthrough
            -Werror)
  target_link_libraries(${target} PRIVATE tutti::tutti)
endfunction()
