# libamberstore at the API level
amber_unit_test(store test_engine)
set_tests_properties(store/test_engine PROPERTIES LABELS "unit;store;sanitize")
# snapshot backups: partial last generation, chain rule, hard recovery
amber_unit_test(store test_snapbackup)
