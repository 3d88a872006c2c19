//! Loading the master key from an environment variable (its own test binary, as
//! setting variables is only sound while no other thread reads them).

use lighthouse_security::{Error, MasterKey};

#[test]
fn the_master_key_loads_from_the_environment_and_bad_values_are_errors() {
    let var = "LIGHTHOUSE_TEST_MASTER_KEY";
    let hex = "00010203".repeat(8);
    // SAFETY: this binary's only test; no other thread reads the environment.
    unsafe { std::env::set_var(var, &hex) };
    let from_env = MasterKey::from_env(var).unwrap().unwrap();
    let expected = MasterKey::from_hex(&hex).unwrap();
    assert_eq!(
        from_env.agent_secret("alice", 1),
        expected.agent_secret("alice", 1)
    );
    unsafe { std::env::set_var(var, "not a key") };
    let e = MasterKey::from_env(var).unwrap_err();
    assert!(matches!(e, Error::InvalidMasterKey { .. }), "{e:?}");
    // Named, so it is not taken for a problem with a key file.
    assert!(e.to_string().contains(var), "{e}");
    unsafe { std::env::remove_var(var) };
    assert!(MasterKey::from_env(var).unwrap().is_none());
}
