# Offline verification and file formats: database header/checkpoint copies
# (dbfile.c), restore.env (restoreenv.c), amb_db_check / amb_logdir_check
# (inspect.c).
foreach(t test_dbfile test_restoreenv test_dbcheck)
  amber_unit_test(store ${t})
  get_property(_labels TEST store/${t} PROPERTY LABELS)
  if(NOT "sanitize" IN_LIST _labels)
    set_property(TEST store/${t} APPEND PROPERTY LABELS sanitize)
  endif()
endforeach()
