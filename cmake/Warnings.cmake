# Project-wide warning and sanitizer flags, applied per target through
# guardant_target_defaults() so that third-party headers are not affected.
function(guardant_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local)
  if(GUARDANT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(GUARDANT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
