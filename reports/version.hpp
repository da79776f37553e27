// What binary this is: the commit its sources were at when it was built ("-dirty" when tracked
// files differed), generated at every build by cmake/git_version.cmake.
#pragma once

namespace lsb {
const char* git_commit();
}  // namespace lsb
