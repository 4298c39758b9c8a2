//! A real OpenLDAP server (Debian `slapd`) for the tests: slapd.conf (mdb backend) and a seeded directory in
//! a temp dir, a self-signed CA and a server certificate made with rcgen, `slapd` listening on
//! `ldap://127.0.0.1:<free port>/` and `ldaps://127.0.0.1:<free port>/`, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// Suffix of the test directory.
pub const SUFFIX: &str = "dc=example,dc=org";
/// Root DN (full rights) and its password.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PW: &str = "root-secret";
/// Service (search) account.
pub const SERVICE_DN: &str = "cn=search,dc=example,dc=org";
pub const SERVICE_PW: &str = "search-secret-pw";

/// The seeded directory: people (alice, bob, carol), partners (dave), POSIX groups (devs: alice+bob,
/// ops: alice), groupOfNames (admins: carol by DN).
pub const SEED: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=search,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: search
userPassword: search-secret-pw

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: alice
cn: Alice Liddell
sn: Liddell
uidNumber: 2001
gidNumber: 2001
homeDirectory: /home/alice
userPassword: alice-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: bob
cn: Bob
sn: Builder
uidNumber: 2002
gidNumber: 2002
homeDirectory: /home/bob
userPassword: bob-pw

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Singer
userPassword: carol-pw

dn: ou=partners,dc=example,dc=org
objectClass: organizationalUnit
ou: partners

dn: uid=dave,ou=partners,dc=example,dc=org
objectClass: inetOrgPerson
uid: dave
cn: Dave
sn: Partner
userPassword: dave-pw

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: cn=devs,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: devs
gidNumber: 1001
memberUid: alice
memberUid: bob

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: ops
gidNumber: 1002
memberUid: alice

dn: ou=roles,dc=example,dc=org
objectClass: organizationalUnit
ou: roles

dn: cn=admins,ou=roles,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=carol,ou=people,dc=example,dc=org
";

/// A running slapd.
#[derive(Debug)]
pub struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    /// Plain LDAP port (StartTLS available).
    pub port: u16,
    /// LDAPS port.
    pub tls_port: u16,
}

/// Finds a slapd tool (`/usr/sbin` is not always in `PATH`); fails the test when missing.
fn tool(name: &str) -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    in_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: these tests need OpenLDAP's slapd (Debian packages slapd and \
                 ldap-utils); run scripts/setup-peers.sh to install them"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// CA and server certificate (SAN 127.0.0.1 and localhost), PEM: (ca cert, server cert, server key).
pub fn make_certificates(ca_name: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

impl Slapd {
    /// Starts slapd with [`SEED`].
    pub fn start() -> Self {
        Self::start_with(SEED)
    }

    /// Starts slapd with `ldif` as the directory content.
    pub fn start_with(ldif: &str) -> Self {
        let slapd = tool("slapd");
        let slapadd = tool("slapadd");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db dir");
        let (ca, cert, key) = make_certificates("xo-rs test CA");
        std::fs::write(d.join("ca.pem"), ca).expect("ca.pem");
        std::fs::write(d.join("server.pem"), cert).expect("server.pem");
        std::fs::write(d.join("server.key"), key).expect("server.key");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {d}/slapd.pid\n\
             argsfile {d}/slapd.args\n\
             TLSCACertificateFile {d}/ca.pem\n\
             TLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ROOT_DN}\"\n\
             rootpw {ROOT_PW}\n\
             directory {d}/db\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by users read by * none\n",
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("slapd.conf");
        std::fs::write(d.join("seed.ldif"), ldif).expect("seed.ldif");
        run(Command::new(&slapadd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("seed.ldif")));

        let port = free_port();
        let tls_port = free_port();
        let log = std::fs::File::create(d.join("slapd.log")).expect("log");
        let child = Command::new(&slapd)
            .arg("-d")
            .arg("0")
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
            ))
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn slapd");
        let mut server = Self {
            child,
            dir,
            port,
            tls_port,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        // Bounded wait: 200 × 50 ms.
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slapd exited ({status}): {}", self.log());
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port) && up(self.tls_port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not listen in time: {}", self.log());
    }

    /// slapd's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<tls_port>`.
    pub fn ldaps_uri(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// Path of the CA that signed the server certificate.
    pub fn ca_path(&self) -> String {
        self.dir
            .path()
            .join("ca.pem")
            .to_string_lossy()
            .into_owned()
    }

    /// The temp dir (for extra files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run slap tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    free_port()
}
