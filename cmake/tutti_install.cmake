include(CMakePackageConfigHelpers)

set(tutti_cmake_dir "${CMAKE_INSTALL_DATADIR}/cmake/tutti")

install(
  TARGETS tutti
  EXPORT tuttiTargets
  FILE_SET HEADERS)
install(
  EXPORT tuttiTargets
  NAMESPACE tutti::
  DESTINATION "${tutti_cmake_dir}")

configure_package_config_file(cmake/tuttiConfig.cmake.in "${PROJECT_BINARY_DIR}/tuttiConfig.cmake"
                              INSTALL_DESTINATION "${tutti_cmake_dir}")
# Header-only: the package is architecture independent.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/tuttiConfigVersion.cmake" COMPATIBILITY SameMajorVersion
                                 ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/tuttiConfig.cmake" "${PROJECT_BINARY_DIR}/tuttiConfigVersion.cmake"
              cmake/tutti_dependencies.cmake DESTINATION "${tutti_cmake_dir}")

configure_file(cmake/tutti.pc.in "${PROJECT_BINARY_DIR}/tutti.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/tutti.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
