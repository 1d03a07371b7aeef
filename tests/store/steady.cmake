# amber-store serve --load --steady: the load deletes what it delivers, the
# databases stop growing (also under the sanitizers)
add_test(NAME store/serve_steady
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/steady_test.sh
                 $<TARGET_FILE:amber-store> $<TARGET_FILE:amber-oracle-check>)
set_tests_properties(store/serve_steady PROPERTIES LABELS "store;sanitize" TIMEOUT 300)
