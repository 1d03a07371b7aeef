# damaged and hostile inputs through the amber-store tool (also under the sanitizers)
add_test(NAME store/damaged_inputs
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/damaged_inputs_test.sh $<TARGET_FILE:amber-store>)
set_tests_properties(store/damaged_inputs PROPERTIES LABELS "store;sanitize" TIMEOUT 300)
