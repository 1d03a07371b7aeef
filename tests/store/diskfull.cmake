# a real full disk (ext4 on a loop device; root)
add_test(NAME store/diskfull
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/diskfull_test.sh
                 $<TARGET_FILE:amber-store> $<TARGET_FILE:amber-oracle-check>)
set_tests_properties(store/diskfull PROPERTIES LABELS "fs;root" SKIP_RETURN_CODE 77 TIMEOUT 300)
