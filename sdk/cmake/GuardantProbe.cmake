# guardant_add_probe(<target> SOURCES ... [OUTPUT_DIR <dir>]): a probe plugin
# as a MODULE with hidden visibility, no undefined symbols, and only the entry
# point exported.
#
# One definition for both uses: the worker's own build includes this file
# from sdk/CMakeLists.txt, and the installed SDK's GuardantSDKConfig.cmake
# includes its installed copy, so an out-of-tree plugin gets exactly the
# flags the built-in probes get. Guardant::sdk names the in-tree alias and the
# imported target alike.
function(guardant_add_probe target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE Guardant::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # -z defs turns a missing library into a link error instead of a plugin the
  # worker refuses at load time. Sanitizer runtimes are resolved by the
  # executable, so the worker's sanitizer build cannot use it.
  if(NOT GUARDANT_SANITIZE)
    target_link_options(${target} PRIVATE -Wl,-z,defs)
  endif()
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR})
  endif()
  # The worker's warning flags (cmake/Warnings.cmake); absent out of tree.
  if(COMMAND guardant_target_defaults)
    guardant_target_defaults(${target})
  endif()
endfunction()
