//! Transparent huge pages, turned off for the `tessera` process: the broker, and the load
//! generator that measures it.
//!
//! mimalloc asks for transparent huge pages for its regions. The first touch of each 2 MiB page
//! then zeroes all of it inside the page fault, on the thread that touched it. On the VM the
//! benchmarks ran on, whose memory the host appears to back on first touch, such faults stalled
//! the broker for tens to hundreds of ms, and every mint queued behind the thread waited
//! (BENCHMARKS.md, issue 16, item 11). Redis gives the same advice for the same reason; the
//! broker's heap (~120 MiB at 12,000 mints/s) gains little from huge pages.

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`), for memory it
/// maps from now on and for its existing mappings' future faults. Fails with the kernel's
/// error when it refuses, which leaves the process as it was.
#[cfg(target_os = "linux")]
pub fn disable() -> Result<(), nix::Error> {
    nix::sys::prctl::set_thp_disable(true)
}

/// Does nothing where transparent huge pages are not Linux's.
#[cfg(not(target_os = "linux"))]
pub fn disable() -> Result<(), std::convert::Infallible> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn after_disable_the_kernel_reports_huge_pages_off_for_the_process() {
        super::disable().unwrap();
        assert!(nix::sys::prctl::get_thp_disable().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
            "/proc/self/status says THP_enabled: 0"
        );
    }
}
