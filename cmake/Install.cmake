# Install rules (cmake --install): binaries, units, example policies, default configuration.
# The layout, for --prefix /usr (what a Debian admin expects; docs/OPERATIONS.md):
#   /usr/bin/{celld,cellctl,cellmodel,cellgate} /usr/libexec/cellhouse/cell-zygote
#   /usr/lib/systemd/system/celld{.service,.socket,-metrics.socket}
#   /usr/lib/systemd/system/cellgate{.service,.socket,-metrics.socket}
#   /usr/share/cellhouse/web/                   (the gateway's chat page)
#   /etc/default/cellgate                       (kept if present)
#   /usr/lib/sysusers.d/cellhouse.conf          (the socket's group, "cellhouse")
#   /etc/default/celld                          (kept if present)
#   /etc/cellhouse/policies/default.textproto   (kept if present)
#   /usr/share/cellhouse/policies/*.textproto   (the examples, for reference and copying)
#   /usr/share/doc/cellhouse/OPERATIONS.md
# Everything follows the prefix given at install time, and DESTDIR.
install(TARGETS celld cellctl cellmodel cellgate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/gateway/web/ DESTINATION ${CMAKE_INSTALL_DATADIR}/cellhouse/web)
install(TARGETS cell-zygote RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/cellhouse)

# celld looks for cell-zygote beside itself, then at this path relative to its own directory
# (so an install under any prefix finds it), then in CELLHOUSE_LIBEXECDIR, the configured
# prefix's libexec directory.
if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_LIBEXECDIR}")
  file(RELATIVE_PATH cellhouse_zygote_from_bindir "${CMAKE_INSTALL_FULL_BINDIR}"
       "${CMAKE_INSTALL_FULL_LIBEXECDIR}/cellhouse")
else()
  file(RELATIVE_PATH cellhouse_zygote_from_bindir "/${CMAKE_INSTALL_BINDIR}"
       "/${CMAKE_INSTALL_LIBEXECDIR}/cellhouse")
endif()
target_compile_definitions(celld PRIVATE
  CELLHOUSE_ZYGOTE_FROM_BINDIR="${cellhouse_zygote_from_bindir}")

install(FILES ${CMAKE_SOURCE_DIR}/units/cellhouse.sysusers
        DESTINATION lib/sysusers.d RENAME cellhouse.conf)
file(GLOB cellhouse_policy_examples ${CMAKE_SOURCE_DIR}/policy/examples/*.textproto)
install(FILES ${cellhouse_policy_examples}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cellhouse/policies)
install(FILES ${CMAKE_SOURCE_DIR}/docs/OPERATIONS.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Units, /etc/default/celld and the active policy directory depend on the install-time prefix:
# units/install_units.cmake renders and installs them then.
install(CODE "
  set(CELLHOUSE_UNITS_SOURCE_DIR \"${CMAKE_SOURCE_DIR}/units\")
  set(CELLHOUSE_POLICY_EXAMPLES_DIR \"${CMAKE_SOURCE_DIR}/policy/examples\")
  set(CELLHOUSE_STAGING_DIR \"${CMAKE_BINARY_DIR}/units/install\")
  set(CELLHOUSE_REL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(CELLHOUSE_REL_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  include(\"${CMAKE_SOURCE_DIR}/units/install_units.cmake\")
")
