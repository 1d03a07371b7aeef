# amber-store create --nocow on real btrfs and xfs loop filesystems (root)
amber_fs_test(store nocow "btrfs xfs" nocow_test.sh 180)
