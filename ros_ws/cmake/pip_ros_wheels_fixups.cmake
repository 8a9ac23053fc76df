# Repairs for building ROS 2 interface packages against the pip ROS 2 wheels (not a system ROS).
#
# scripts/build_ros_ws.sh passes this file as CMAKE_PROJECT_INCLUDE, so it runs right after the
# project() call of each package in ros_ws/; nothing in the virtual environment is edited.
#
# Problem: the wheels' exported targets `<pkg>::<pkg>__rosidl_generator_py` carry, in their
# INTERFACE_INCLUDE_DIRECTORIES, the Python and numpy include folders of the machine that built
# the wheels (/opt/python/cp311-cp311/include/python3.11 and
# /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include). CMake refuses to
# generate build files for a target that links them ("includes non-existent path").
#
# Fix: once the package's CMakeLists.txt has been read (a deferred call, so every find_package()
# has run), rewrite those include folders on each imported target to this machine's Python and
# numpy include folders (found with FindPython3, the same interpreter rosidl_generator_py uses).

cmake_minimum_required(VERSION 3.19)  # cmake_language(DEFER)

function(_qwen_stack_fix_wheel_include_dirs)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed "")
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new_dirs "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(NOT EXISTS "${_dir}" AND _dir MATCHES "/numpy/(_core/)?include$")
        list(APPEND _new_dirs ${Python3_NumPy_INCLUDE_DIRS})
        set(_changed TRUE)
      elseif(NOT EXISTS "${_dir}" AND _dir MATCHES "/include/python3\\.[0-9]+$")
        list(APPEND _new_dirs ${Python3_INCLUDE_DIRS})
        set(_changed TRUE)
      else()
        list(APPEND _new_dirs "${_dir}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new_dirs)
      set_target_properties("${_target}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new_dirs}")
      list(APPEND _fixed "${_target}")
    endif()
  endforeach()
  list(LENGTH _fixed _count)
  if(_count GREATER 0)
    message(STATUS "pip ROS wheels: replaced build-machine Python/numpy include dirs on ${_count} "
                   "imported targets with ${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()
endfunction()

# Register once per package, at the top-level project() only.
if(CMAKE_SOURCE_DIR STREQUAL PROJECT_SOURCE_DIR AND NOT _QWEN_STACK_WHEEL_FIXUP_REGISTERED)
  set(_QWEN_STACK_WHEEL_FIXUP_REGISTERED TRUE)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _qwen_stack_fix_wheel_include_dirs)
endif()
