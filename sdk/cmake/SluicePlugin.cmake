# sluice_add_plugin(NAME SOURCES a.cc b.cc ...)
#
# Builds an operator plugin: a MODULE library (lib<NAME>.so) compiled against Sluice::sdk with
# hidden visibility, linked with -Wl,--no-undefined (a missing symbol fails the build, not the
# load on a worker), exporting nothing but its entry point (sluice_plugin_init_v<major>).
# Link further dependencies with target_link_libraries(<NAME> PRIVATE ...) as usual.

function(sluice_add_plugin NAME)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  # This file's folder (also from other directories of the including project).
  set(_SLUICE_PLUGIN_CMAKE_DIR "${CMAKE_CURRENT_FUNCTION_LIST_DIR}")
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "sluice_add_plugin(${NAME}): SOURCES is required")
  endif()
  add_library(${NAME} MODULE ${ARG_SOURCES})
  target_link_libraries(${NAME} PRIVATE Sluice::sdk)
  set_target_properties(${NAME} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  target_link_options(${NAME} PRIVATE
    "LINKER:--no-undefined"
    "LINKER:--version-script=${_SLUICE_PLUGIN_CMAKE_DIR}/sluice_plugin.map")
  set_property(TARGET ${NAME} APPEND PROPERTY LINK_DEPENDS "${_SLUICE_PLUGIN_CMAKE_DIR}/sluice_plugin.map")
endfunction()
