# Runs at install time (included by cmake/Install.cmake through install(CODE)), when the prefix
# is final: `cmake --install build --prefix /usr` may differ from the configured one. Renders
# the units with that prefix's paths and installs them, the default settings and the default
# policy. Files under /etc an admin may have edited are kept.
#
# In: CMAKE_INSTALL_PREFIX (the install-time prefix), CELLHOUSE_UNITS_SOURCE_DIR,
# CELLHOUSE_POLICY_EXAMPLES_DIR, CELLHOUSE_STAGING_DIR, CELLHOUSE_REL_BINDIR and
# CELLHOUSE_REL_DOCDIR (GNUInstallDirs values, relative to the prefix unless absolute).

# GNUInstallDirs' rule for sysconfdir, applied to the install-time prefix: /usr puts
# configuration in /etc, any other prefix in <prefix>/etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/")
  set(CELLHOUSE_SYSCONFDIR "/etc")
else()
  set(CELLHOUSE_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/etc")
endif()
foreach(var BINDIR DOCDIR)
  if(IS_ABSOLUTE "${CELLHOUSE_REL_${var}}")
    set(CELLHOUSE_${var} "${CELLHOUSE_REL_${var}}")
  else()
    set(CELLHOUSE_${var} "${CMAKE_INSTALL_PREFIX}/${CELLHOUSE_REL_${var}}")
  endif()
endforeach()

# One staging directory per destination: installs into different roots may run at once.
string(MD5 destination_key "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(staging "${CELLHOUSE_STAGING_DIR}/${destination_key}")
file(MAKE_DIRECTORY "${staging}")
foreach(template celld.service celld.socket celld-metrics.socket celld.default
                 cellgate.service cellgate.socket cellgate-metrics.socket cellgate.default)
  configure_file("${CELLHOUSE_UNITS_SOURCE_DIR}/${template}.in" "${staging}/${template}" @ONLY)
endforeach()

# Units go where systemd looks for packaged ones: <prefix>/lib/systemd/system (/usr/lib/...,
# which is /lib/... on Debian's merged /usr; /usr/local/lib/systemd/system for /usr/local).
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${staging}/celld.service" "${staging}/celld.socket"
           "${staging}/celld-metrics.socket" "${staging}/cellgate.service"
           "${staging}/cellgate.socket" "${staging}/cellgate-metrics.socket")

# file(INSTALL) prefixes DESTDIR itself; existence checks must do it by hand.
macro(cellhouse_install_config source destination_dir name mode)
  if(EXISTS "$ENV{DESTDIR}${destination_dir}/${name}")
    message(STATUS "Keeping: $ENV{DESTDIR}${destination_dir}/${name} (already there)")
  else()
    file(INSTALL DESTINATION "${destination_dir}" TYPE FILE PERMISSIONS ${mode}
         FILES "${source}" RENAME "${name}")
  endif()
endmacro()
cellhouse_install_config("${staging}/celld.default" "${CELLHOUSE_SYSCONFDIR}/default" celld
                         "OWNER_READ;OWNER_WRITE;GROUP_READ;WORLD_READ")
cellhouse_install_config("${staging}/cellgate.default" "${CELLHOUSE_SYSCONFDIR}/default" cellgate
                         "OWNER_READ;OWNER_WRITE;GROUP_READ;WORLD_READ")
# The policy directory holds the active set; the default policy starts it. The other examples
# stay in <datadir>/cellhouse/policies for an admin to copy.
cellhouse_install_config("${CELLHOUSE_POLICY_EXAMPLES_DIR}/default.textproto"
                         "${CELLHOUSE_SYSCONFDIR}/cellhouse/policies" default.textproto
                         "OWNER_READ;OWNER_WRITE;GROUP_READ;WORLD_READ")
