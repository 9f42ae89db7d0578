// tutti's version: the single source that CMake and the wire protocol read.
#pragma once

#define TUTTI_VERSION_MAJOR 0
#define TUTTI_VERSION_MINOR 1
#define TUTTI_VERSION_PATCH 0

namespace tutti {

struct version_info {
  int major;
  int minor;
  int patch;
};

inline constexpr version_info version{TUTTI_VERSION_MAJOR, TUTTI_VERSION_MINOR, TUTTI_VERSION_PATCH};

#define TUTTI_DETAIL_STR2(x) #x
#define TUTTI_DETAIL_STR(x) TUTTI_DETAIL_STR2(x)
inline constexpr const char* version_string = TUTTI_DETAIL_STR(TUTTI_VERSION_MAJOR) "." TUTTI_DETAIL_STR(
    TUTTI_VERSION_MINOR) "." TUTTI_DETAIL_STR(TUTTI_VERSION_PATCH);
#undef TUTTI_DETAIL_STR
#undef TUTTI_DETAIL_STR2

}  // namespace tutti
