# Packages from this build (CPack): `guardant-worker` (binary, built-in probes,
# config, systemd units) and `guardant-worker-sdk` (headers, CMake package
# config, pkg-config file, example plugin), as .deb or .rpm.
#
# The layout is chosen when configuring, because it is compiled in (the
# worker's default plugin directory) and written into the packaged config:
#
#   packaging/build-packages.sh deb OUT_DIR   # Debian: /usr/lib/guardant/plugins, /lib/systemd/system
#   packaging/build-packages.sh rpm OUT_DIR   # RPM: /usr/lib64/guardant/plugins, /usr/lib/systemd/system
#
# which boils down to
#
#   cmake -S . -B B -DCMAKE_INSTALL_PREFIX=/usr -DGUARDANT_PACKAGE_LAYOUT=deb ...
#   cmake --build B && (cd B && cpack -G DEB)
#
# Components: the engine's and the probes' install() rules name none, so
# CMake files them under "Unspecified"; that component is the guardant-worker
# package. The SDK's rules (sdk/CMakeLists.txt) use the component `sdk`.
set(GUARDANT_PACKAGE_LAYOUT "deb" CACHE STRING "Package layout and cpack generator: deb or rpm")
set_property(CACHE GUARDANT_PACKAGE_LAYOUT PROPERTY STRINGS deb rpm)
if(NOT GUARDANT_PACKAGE_LAYOUT MATCHES "^(deb|rpm)$")
  message(FATAL_ERROR "GUARDANT_PACKAGE_LAYOUT must be deb or rpm, got '${GUARDANT_PACKAGE_LAYOUT}'")
endif()
set(GUARDANT_PACKAGE_RELEASE "1" CACHE STRING "Package revision of this version (Debian revision, RPM release)")
set(GUARDANT_PACKAGE_MAINTAINER "Guardant Worker maintainers <maintainers@guardant.example>"
  CACHE STRING "Maintainer (deb) / packager (rpm), \"Name <email>\"")
# The repository carries no license file yet; packagers set the real one.
set(GUARDANT_PACKAGE_LICENSE "LicenseRef-Guardant-Proprietary" CACHE STRING "License short name (SPDX)")
set(GUARDANT_PACKAGE_LICENSE_TEXT "All rights reserved by the Guardant Worker authors." CACHE STRING
  "License text for the Debian copyright file")

set(GUARDANT_WORKER_COMPONENT Unspecified)
set(GUARDANT_CONFIG_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/guardant")
set(GUARDANT_STATE_DIR "${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/lib/guardant")
set(GUARDANT_DOC_DIR "${CMAKE_INSTALL_FULL_DATADIR}/doc/guardant-worker")
set(GUARDANT_SDK_DOC_DIR "${CMAKE_INSTALL_FULL_DATADIR}/doc/guardant-worker-sdk")
if(IS_ABSOLUTE "${GUARDANT_PLUGIN_INSTALL_DIR}")
  set(GUARDANT_PLUGIN_FULL_DIR "${GUARDANT_PLUGIN_INSTALL_DIR}")
else()
  set(GUARDANT_PLUGIN_FULL_DIR "${CMAKE_INSTALL_PREFIX}/${GUARDANT_PLUGIN_INSTALL_DIR}")
endif()
if(GUARDANT_PACKAGE_LAYOUT STREQUAL "rpm" AND NOT GUARDANT_PLUGIN_FULL_DIR MATCHES "/lib64/")
  message(WARNING "rpm layout with plugins in ${GUARDANT_PLUGIN_FULL_DIR}: RPM distributions "
    "keep architecture-dependent files in lib64 (-DGUARDANT_PLUGIN_INSTALL_DIR=lib64/guardant/plugins)")
endif()
# Debian 12's lintian wants units under /lib (usrmerge makes it /usr/lib at
# run time); RPM distributions use /usr/lib/systemd/system.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND GUARDANT_PACKAGE_LAYOUT STREQUAL "deb")
  set(_guardant_unit_dir_default "/lib/systemd/system")
else()
  set(_guardant_unit_dir_default "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
# Recomputed on every configure (so one build tree can switch layouts) unless
# given with -DGUARDANT_SYSTEMD_UNIT_DIR=...
if(NOT DEFINED CACHE{GUARDANT_SYSTEMD_UNIT_DIR})
  set(GUARDANT_SYSTEMD_UNIT_DIR "${_guardant_unit_dir_default}")
endif()
set(GUARDANT_SYSUSERS_DIR "${CMAKE_INSTALL_PREFIX}/lib/sysusers.d")

set(_guardant_pkg_src "${PROJECT_SOURCE_DIR}/packaging")
set(_guardant_pkg_out "${PROJECT_BINARY_DIR}/packaging")
file(MAKE_DIRECTORY "${_guardant_pkg_out}")

# ---------------------------------------------------------------------------
# The packaged config: config/worker.toml with this layout's plugin
# directories and the spool in the state directory. Every other key keeps
# the default the file documents.
# ---------------------------------------------------------------------------
set(_guardant_toml "${PROJECT_SOURCE_DIR}/config/worker.toml")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_guardant_toml}")
file(READ "${_guardant_toml}" _toml)
# Replaces the value of `key` in [section] (the line "key = ..."), leaving
# everything else as written. A file whose layout no longer matches gets a
# warning rather than a failed configure for everyone; the packaging tests
# then fail on the packaged config.
function(_guardant_set_toml_key var section key value)
  set(text "${${var}}")
  string(FIND "${text}" "\n[${section}]\n" at)
  if(at EQUAL -1)
    message(WARNING "config/worker.toml has no [${section}] section; the packaged config keeps its ${key}")
    return()
  endif()
  string(SUBSTRING "${text}" 0 ${at} head)
  string(SUBSTRING "${text}" ${at} -1 tail)
  string(FIND "${tail}" "\n${key} = " key_at)
  string(SUBSTRING "${tail}" 1 -1 after_header)
  string(FIND "${after_header}" "\n[" next_section)
  if(key_at EQUAL -1 OR (NOT next_section EQUAL -1 AND key_at GREATER next_section))
    message(WARNING "config/worker.toml has no '${key} = ' line in [${section}]; the packaged config keeps its default")
    return()
  endif()
  string(SUBSTRING "${tail}" 0 ${key_at} before_key)
  math(EXPR line_at "${key_at} + 1")
  string(SUBSTRING "${tail}" ${line_at} -1 from_key)
  string(FIND "${from_key}" "\n" line_end)
  if(line_end EQUAL -1)
    set(rest "")
  else()
    string(SUBSTRING "${from_key}" ${line_end} -1 rest)
  endif()
  set(${var} "${head}${before_key}\n${key} = ${value}${rest}" PARENT_SCOPE)
endfunction()
_guardant_set_toml_key(_toml plugins dirs "[\"${GUARDANT_PLUGIN_FULL_DIR}\", \"${GUARDANT_THIRD_PARTY_PLUGIN_DIR}\"]")
_guardant_set_toml_key(_toml results spool_path "\"${GUARDANT_STATE_DIR}/spool\"")
string(PREPEND _toml "# Installed by the guardant-worker package (a conffile: upgrades keep your\n"
  "# edits). Differs from the documented defaults only in plugins.dirs and\n"
  "# results.spool_path, which point at this package's directories.\n#\n")
file(GENERATE OUTPUT "${_guardant_pkg_out}/worker.toml" CONTENT "${_toml}")

configure_file("${_guardant_pkg_src}/systemd/guardant-worker.service.in"
  "${_guardant_pkg_out}/guardant-worker.service" @ONLY)
configure_file("${_guardant_pkg_src}/systemd/guardant-worker@.service.in"
  "${_guardant_pkg_out}/guardant-worker@.service" @ONLY)

install(FILES "${_guardant_pkg_out}/worker.toml" DESTINATION "${GUARDANT_CONFIG_DIR}"
  COMPONENT ${GUARDANT_WORKER_COMPONENT})
install(FILES "${_guardant_pkg_out}/guardant-worker.service" "${_guardant_pkg_out}/guardant-worker@.service"
  DESTINATION "${GUARDANT_SYSTEMD_UNIT_DIR}" COMPONENT ${GUARDANT_WORKER_COMPONENT})
install(FILES "${_guardant_pkg_src}/systemd/guardant-worker.sysusers" DESTINATION "${GUARDANT_SYSUSERS_DIR}"
  RENAME guardant-worker.conf COMPONENT ${GUARDANT_WORKER_COMPONENT})
configure_file("${_guardant_pkg_src}/man/guardant-worker.1.in" "${_guardant_pkg_out}/guardant-worker.1" @ONLY)
execute_process(COMMAND gzip -9nf "${_guardant_pkg_out}/guardant-worker.1" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "gzip failed on ${_guardant_pkg_out}/guardant-worker.1")
endif()
install(FILES "${_guardant_pkg_out}/guardant-worker.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1"
  COMPONENT ${GUARDANT_WORKER_COMPONENT})
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION "${GUARDANT_DOC_DIR}"
  COMPONENT ${GUARDANT_WORKER_COMPONENT})
if(GUARDANT_PACKAGE_LAYOUT STREQUAL "rpm")
  # Owned by the package with the right owner (see the RPM file list below);
  # the deb's postinst makes it instead.
  install(DIRECTORY DESTINATION "${GUARDANT_STATE_DIR}" COMPONENT ${GUARDANT_WORKER_COMPONENT})
endif()

# Debian wants a copyright file and a changelog in each package's doc dir.
string(TIMESTAMP GUARDANT_COPYRIGHT_YEAR "%Y" UTC)
string(TIMESTAMP GUARDANT_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
string(TIMESTAMP GUARDANT_RPM_CHANGELOG_DATE "%a %b %d %Y" UTC)
set(GUARDANT_DEB_VERSION "${PROJECT_VERSION}-${GUARDANT_PACKAGE_RELEASE}")
configure_file("${_guardant_pkg_src}/debian/copyright.in" "${_guardant_pkg_out}/copyright" @ONLY)
configure_file("${_guardant_pkg_src}/rpm/changelog.in" "${_guardant_pkg_out}/rpm-changelog" @ONLY)
foreach(_pkg guardant-worker guardant-worker-sdk)
  set(GUARDANT_DEB_PACKAGE ${_pkg})
  configure_file("${_guardant_pkg_src}/debian/changelog.in" "${_guardant_pkg_out}/${_pkg}/changelog.Debian" @ONLY)
  # gzip -9n: maximum compression and no timestamp, as lintian checks.
  execute_process(COMMAND gzip -9nf "${_guardant_pkg_out}/${_pkg}/changelog.Debian" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "gzip failed on ${_guardant_pkg_out}/${_pkg}/changelog.Debian")
  endif()
endforeach()
install(FILES "${_guardant_pkg_out}/copyright" DESTINATION "${GUARDANT_DOC_DIR}"
  COMPONENT ${GUARDANT_WORKER_COMPONENT})
install(FILES "${_guardant_pkg_out}/copyright" DESTINATION "${GUARDANT_SDK_DOC_DIR}" COMPONENT sdk)
if(GUARDANT_PACKAGE_LAYOUT STREQUAL "deb")
  install(FILES "${_guardant_pkg_out}/guardant-worker/changelog.Debian.gz" DESTINATION "${GUARDANT_DOC_DIR}"
    COMPONENT ${GUARDANT_WORKER_COMPONENT})
  install(FILES "${_guardant_pkg_out}/guardant-worker-sdk/changelog.Debian.gz" DESTINATION "${GUARDANT_SDK_DOC_DIR}"
    COMPONENT sdk)
endif()

# ---------------------------------------------------------------------------
# CPack
# ---------------------------------------------------------------------------
set(CPACK_PACKAGE_NAME "guardant-worker")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "Guardant")
set(CPACK_PACKAGE_CONTACT "${GUARDANT_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES TRUE)
set(CPACK_PACKAGE_RELOCATABLE OFF)  # /etc, /var and unit paths are fixed
set(CPACK_COMPONENTS_ALL ${GUARDANT_WORKER_COMPONENT} sdk)
set(CPACK_PACKAGE_DIRECTORY "${PROJECT_BINARY_DIR}/packages")
string(TOUPPER "${GUARDANT_WORKER_COMPONENT}" _W)

set(_worker_summary "Uptime check engine with web, tcp and ping probes")
set(_worker_description "Guardant Worker runs uptime checks (HTTP(S), TCP with TLS, ICMP ping and
third-party probe plugins) against targets and writes a result record for
every check. It takes check jobs from a shared Redis (BullMQ) queue or runs
the monitors of its own TOML file. It includes a hardened systemd unit, a
template unit for several workers per host, and /health, /ready and
/metrics endpoints.")
set(_sdk_summary "Plugin SDK for Guardant Worker probe plugins")
set(_sdk_description "Headers of the Guardant Worker probe ABI (C) and its header-only C++17
layer, a CMake package config (find_package(GuardantSDK) with
guardant_add_probe()), a pkg-config file, and the source of an example
third-party probe (Redis PING).")

# --- deb ---
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE "${GUARDANT_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_${_W}_PACKAGE_NAME guardant-worker)
set(CPACK_DEBIAN_${_W}_DESCRIPTION "${_worker_summary}\n${_worker_description}")
set(CPACK_DEBIAN_${_W}_PACKAGE_SECTION net)
# Library dependencies are computed by dpkg-shlibdeps from the binary and
# the probes; adduser is what the maintainer scripts call.
set(CPACK_DEBIAN_${_W}_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_${_W}_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_${_W}_PACKAGE_CONTROL_EXTRA
  "${_guardant_pkg_src}/debian/postinst;${_guardant_pkg_src}/debian/prerm;${_guardant_pkg_src}/debian/postrm;${_guardant_pkg_src}/debian/conffiles")
set(CPACK_DEBIAN_SDK_PACKAGE_NAME guardant-worker-sdk)
set(CPACK_DEBIAN_SDK_DESCRIPTION "${_sdk_summary}\n${_sdk_description}")
set(CPACK_DEBIAN_SDK_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_SDK_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_SDK_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_SDK_PACKAGE_PROVIDES "guardant-worker-dev")
set(CPACK_DEBIAN_SDK_PACKAGE_RECOMMENDS "cmake, g++ | c++-compiler")
set(CPACK_DEBIAN_SDK_PACKAGE_SUGGESTS "guardant-worker, pkg-config")

# --- rpm ---
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE "${GUARDANT_PACKAGE_RELEASE}")
set(CPACK_RPM_PACKAGE_LICENSE "${GUARDANT_PACKAGE_LICENSE}")
set(CPACK_RPM_PACKAGE_GROUP "Applications/System")
set(CPACK_RPM_SPEC_MORE_DEFINE "%define packager ${GUARDANT_PACKAGE_MAINTAINER}")
set(CPACK_RPM_CHANGELOG_FILE "${_guardant_pkg_out}/rpm-changelog")
# Requires: computed by rpmbuild's dependency generators from the ELF files.
set(CPACK_RPM_PACKAGE_AUTOREQ ON)
set(CPACK_RPM_PACKAGE_AUTOPROV OFF)  # the probes are plugins, not libraries to link against
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
  /usr/lib/systemd /usr/lib/systemd/system /usr/lib/sysusers.d /usr/share/cmake
  /usr/share/pkgconfig /usr/share/man /usr/share/man/man1 /var /var/lib)
set(CPACK_RPM_${_W}_PACKAGE_NAME guardant-worker)
set(CPACK_RPM_${_W}_PACKAGE_SUMMARY "${_worker_summary}")
set(CPACK_RPM_${_W}_PACKAGE_DESCRIPTION "${_worker_description}")
set(CPACK_RPM_${_W}_PACKAGE_REQUIRES_PRE "shadow-utils")
set(CPACK_RPM_${_W}_PRE_INSTALL_SCRIPT_FILE "${_guardant_pkg_src}/rpm/pre.sh")
set(CPACK_RPM_${_W}_POST_INSTALL_SCRIPT_FILE "${_guardant_pkg_src}/rpm/post.sh")
set(CPACK_RPM_${_W}_PRE_UNINSTALL_SCRIPT_FILE "${_guardant_pkg_src}/rpm/preun.sh")
set(CPACK_RPM_${_W}_POST_UNINSTALL_SCRIPT_FILE "${_guardant_pkg_src}/rpm/postun.sh")
set(CPACK_RPM_${_W}_USER_FILELIST
  "%config(noreplace) ${GUARDANT_CONFIG_DIR}/worker.toml"
  "%dir %attr(0750,guardant,guardant) ${GUARDANT_STATE_DIR}")
set(CPACK_RPM_SDK_PACKAGE_NAME guardant-worker-sdk)
set(CPACK_RPM_SDK_PACKAGE_SUMMARY "${_sdk_summary}")
set(CPACK_RPM_SDK_PACKAGE_DESCRIPTION "${_sdk_description}")
set(CPACK_RPM_SDK_PACKAGE_ARCHITECTURE noarch)
set(CPACK_RPM_SDK_PACKAGE_PROVIDES "guardant-worker-devel = ${PROJECT_VERSION}")

if(GUARDANT_PACKAGE_LAYOUT STREQUAL "rpm")
  set(CPACK_GENERATOR RPM)
else()
  set(CPACK_GENERATOR DEB)
endif()
include(CPack)
