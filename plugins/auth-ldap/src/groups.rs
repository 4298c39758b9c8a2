//! Group synchronisation: LDAP groups become XO groups `{provider: 'ldap', providerGroupId}` (renamed
//! with their LDAP name), their members the XO users linked to the LDAP member entries; XO groups whose
//! LDAP group disappeared are deleted (full sync). At sign-in only the signing-in user's memberships of
//! this domain's groups are updated (added where it is a member, removed where it no longer is).

use ldap3::Scope;

use crate::authenticator::Authenticator;
use crate::client::{is_dn_field, Domain, Entry, Session};
use crate::config::GroupsConfig;
use crate::directory::{DirectoryGroup, DirectoryUser};
use crate::error::LdapAuthError;
use crate::filter::escape;

/// Provider of every group this plugin creates (whatever its domain, as XO does).
pub const GROUP_PROVIDER: &str = "ldap";

impl Authenticator {
    /// Syncs the groups of `domain`: all of them (`user: None`), or only `user`'s memberships (`user`
    /// with the value of its `membersMapping.userAttribute`).
    pub(crate) async fn synchronize_domain(
        &self,
        domain: &Domain,
        user: Option<(&DirectoryUser, Option<&str>)>,
    ) -> Result<(), LdapAuthError> {
        let Some(groups) = &domain.config.groups else {
            return Ok(());
        };
        let mut session = domain.connect(&domain.uris()).await?;
        let result = self.sync_with(&mut session, domain, groups, user).await;
        session.close().await;
        result
    }

    async fn sync_with(
        &self,
        session: &mut Session,
        domain: &Domain,
        config: &GroupsConfig,
        user: Option<(&DirectoryUser, Option<&str>)>,
    ) -> Result<(), LdapAuthError> {
        tracing::info!(domain = %domain.provider, "synchronizing LDAP groups");
        let mapping = &config.members_mapping;
        let filter = if config.filter.is_empty() {
            "(objectClass=*)"
        } else {
            config.filter.as_str()
        };
        let ldap_groups = session
            .search(
                &config.base,
                Scope::Subtree,
                filter,
                &[
                    &config.id_attribute,
                    &config.display_name_attribute,
                    &mapping.group_attribute,
                ],
                None,
            )
            .await?;
        let xo_users = match user {
            None => self.directory.users()?,
            Some(_) => Vec::new(),
        };
        let mut xo_groups = self.directory.groups()?;
        let dn_members = is_dn_field(&mapping.user_attribute);

        for ldap_group in &ldap_groups {
            let (Some(group_id), Some(group_name)) = (
                ldap_group
                    .first(&config.id_attribute)
                    .filter(|s| !s.is_empty()),
                ldap_group
                    .first(&config.display_name_attribute)
                    .filter(|s| !s.is_empty()),
            ) else {
                tracing::error!(dn = %ldap_group.dn, "LDAP group without id or name, ignored");
                continue;
            };
            let members = ldap_group.values(&mapping.group_attribute);
            if let Some((_, member_id)) = user {
                let is_member = member_id.is_some_and(|m| {
                    members.iter().any(|v| {
                        if dn_members {
                            v.eq_ignore_ascii_case(m)
                        } else {
                            v == m
                        }
                    })
                });
                if !is_member {
                    continue;
                }
            }
            let scoped_group_id = domain.scoped_id(&group_id);
            let position = xo_groups.iter().position(|g| {
                g.provider.as_deref() == Some(GROUP_PROVIDER)
                    && g.provider_group_id.as_deref() == Some(scoped_group_id.as_str())
            });
            let xo_group = match position {
                None => {
                    if xo_groups.iter().any(|g| g.name == group_name) {
                        tracing::error!(group = %group_name, "a group with this name already exists, LDAP group ignored");
                        continue;
                    }
                    self.directory
                        .create_group(&group_name, GROUP_PROVIDER, &scoped_group_id)?
                }
                Some(i) => {
                    let existing = xo_groups.remove(i);
                    if existing.name != group_name {
                        self.directory.rename_group(&existing.id, &group_name)?;
                    }
                    self.directory.group(&existing.id)?.unwrap_or(existing)
                }
            };

            if let Some((user, _)) = user {
                self.directory.add_user_to_group(&user.id, &xo_group.id)?;
                continue;
            }

            let mut stale: Vec<String> = xo_group.users.clone();
            for member in &members {
                let Some(ldap_user) = self
                    .find_member(session, domain, &mapping.user_attribute, member)
                    .await?
                else {
                    tracing::error!(member = %member, group = %group_name, "LDAP group member not found among users");
                    continue;
                };
                let Some(ldap_user_id) = ldap_user.first(&domain.config.user_id_attribute) else {
                    continue;
                };
                let scoped_user_id = domain.scoped_id(&ldap_user_id);
                let Some(xo_user) = xo_users
                    .iter()
                    .find(|u| u.provider_id(&domain.provider) == Some(scoped_user_id.as_str()))
                else {
                    tracing::debug!(member = %member, group = %group_name, "LDAP group member has no XO user yet");
                    continue;
                };
                if let Some(i) = stale.iter().position(|id| *id == xo_user.id) {
                    stale.remove(i);
                    continue;
                }
                self.directory
                    .add_user_to_group(&xo_user.id, &xo_group.id)?;
            }
            for user_id in stale {
                self.directory
                    .remove_user_from_group(&user_id, &xo_group.id)?;
            }
        }

        // What is left of `xo_groups` was not matched by an LDAP group (of the user, at sign-in).
        let leftovers = xo_groups
            .iter()
            .filter(|g| is_domain_group(domain, g))
            .collect::<Vec<_>>();
        match user {
            Some((user, _)) => {
                for group in leftovers {
                    if group.users.contains(&user.id) {
                        self.directory.remove_user_from_group(&user.id, &group.id)?;
                    }
                }
            }
            None => {
                for group in leftovers {
                    self.directory.delete_group(&group.id)?;
                }
            }
        }
        tracing::info!(domain = %domain.provider, "LDAP groups synchronized");
        Ok(())
    }

    /// The LDAP user a group member value refers to (a DN, or a value of `user_attribute`).
    async fn find_member(
        &self,
        session: &mut Session,
        domain: &Domain,
        user_attribute: &str,
        member: &str,
    ) -> Result<Option<Entry>, LdapAuthError> {
        let id_attribute = domain.config.user_id_attribute.as_str();
        let entries = if is_dn_field(user_attribute) {
            session
                .search(
                    member,
                    Scope::Base,
                    "(objectClass=*)",
                    &[id_attribute],
                    None,
                )
                .await?
        } else {
            let filter = format!("({user_attribute}={})", escape(member));
            session
                .search(
                    &domain.config.base,
                    Scope::Subtree,
                    &filter,
                    &[id_attribute],
                    Some(1),
                )
                .await?
        };
        Ok(entries.into_iter().next())
    }
}

/// Whether an XO group was created by this domain's sync.
fn is_domain_group(domain: &Domain, group: &DirectoryGroup) -> bool {
    if group.provider.as_deref() != Some(GROUP_PROVIDER) {
        return false;
    }
    let Some(id) = group.provider_group_id.as_deref() else {
        return false;
    };
    if domain.is_primary {
        !id.contains("://")
    } else {
        id.starts_with(&format!("{}:", domain.config.uri))
    }
}
