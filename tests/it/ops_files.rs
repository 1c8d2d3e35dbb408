//! The shipped operations files say what the docs promise: the systemd unit's key
//! settings (its syntax is checked by `systemd/verify.sh` with `systemd-analyze
//! verify` in CI), the sysusers entry, and a sysctl file whose every setting has a
//! comment and names a key this kernel has.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn unit_has_the_promised_settings() {
    let unit = read("systemd/switchboard.service");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "LimitNOFILE=1048576",
        "User=switchboard",
        "Group=switchboard",
        "StateDirectory=switchboard",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        // `run` exits 2 on what `check-config` refuses: no restart loop on it.
        "RestartPreventExitStatus=2",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "ExecStart=/usr/local/bin/switchboard run --config /etc/switchboard/switchboard.toml",
    ] {
        assert!(lines.contains(&want), "unit lacks {want:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("WatchdogSec=")),
        "no WatchdogSec"
    );
    // A failed ExecStartPre= is restarted whatever its exit status: a loop.
    assert!(
        !lines.iter().any(|l| l.starts_with("ExecStartPre=")),
        "ExecStartPre= would restart a refused configuration forever"
    );
}

#[test]
fn sysusers_creates_the_service_user() {
    let su = read("systemd/switchboard.sysusers");
    let entry: Vec<&str> = su
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(entry[..2], ["u", "switchboard"]);
}

#[test]
fn every_sysctl_setting_is_commented_and_known() {
    let text = read("tuning/sysctl.d/99-switchboard.conf");
    let mut previous = "";
    let mut settings = 0;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            previous = l;
            continue;
        }
        settings += 1;
        assert!(previous.starts_with('#'), "no comment right above {l:?}");
        let (key, value) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {l}"));
        assert!(!value.trim().is_empty(), "{l}");
        let (optional, key) = match key.trim().strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key.trim()),
        };
        let proc = Path::new("/proc/sys").join(key.replace('.', "/"));
        assert!(
            optional || proc.exists() || !Path::new("/proc/sys/net").exists(),
            "{key}: no {} on this kernel",
            proc.display()
        );
        previous = l;
    }
    assert!(settings >= 10, "{settings}");
}
