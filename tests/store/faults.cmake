# Fault tests (tests/harness/faultvfs.h): power loss at every sync point
# (test_powerloss, ~15 s, ~30 s under ASan) and ENOSPC/EIO at every write,
# sync, allocate, ... (test_faults, ~10 s).  Both link with
# --wrap=amb_vfs_posix so that the calls of ams_create(), which has no vfs
# option, go through the fault layer too.
foreach(t test_powerloss test_faults)
  amber_unit_test(store ${t})
  target_link_libraries(${t} PRIVATE amber_harness)
  target_link_options(${t} PRIVATE -Wl,--wrap=amb_vfs_posix)
  set_tests_properties(store/${t} PROPERTIES LABELS "unit;store;faults;sanitize"
                       TIMEOUT 300)
endforeach()
