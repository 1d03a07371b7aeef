# The crash test: serve under load, kill -9 at a random moment, recover,
# check the dump against the oracle (design.md section 7).  CRASH_ROUNDS
# (default 100) sets the number of rounds.
add_test(NAME store/crash
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/crash_test.sh
                 $<TARGET_FILE:amber-store> $<TARGET_FILE:amber-oracle-check>)
set_tests_properties(store/crash PROPERTIES LABELS "crash" TIMEOUT 1200)
