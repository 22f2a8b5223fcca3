# Install rules (cmake --install): binaries, units, example policies, default configuration.
install(TARGETS celld cellctl cellmodel RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS cell-zygote RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/cellhouse)
