//! Argon2id password hashing with configurable cost.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{Result, StoreError};

/// Argon2id cost parameters used for new hashes (verification reads them from the stored PHC string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for HashParams {
    /// Argon2's recommended defaults (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        Self {
            m_cost: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

impl HashParams {
    /// Cheap parameters for tests (never use in production).
    pub fn light() -> Self {
        Self {
            m_cost: 1024,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes a password into a PHC string.
    pub fn hash(&self, password: &str) -> Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        Ok(self
            .argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| StoreError::Hash(e.to_string()))?
            .to_string())
    }
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub(crate) fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable password hash");
            false
        }
    }
}
