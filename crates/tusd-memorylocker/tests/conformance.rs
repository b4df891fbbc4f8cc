//! The memory locker against the locker conformance suite in
//! `tusd-testsupport`, with clones of one locker as the instances that
//! share a lock space (several tasks of one process).

use tusd_memorylocker::MemoryLocker;
use tusd_testsupport::{check_locker, clones_of};

#[tokio::test]
async fn the_memory_locker_passes_the_locker_conformance_suite() {
    check_locker(&clones_of(MemoryLocker::new()))
        .await
        .assert_passed();
}
