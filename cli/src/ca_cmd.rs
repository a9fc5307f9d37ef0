//! `custody ca init` and `custody ca issue`: a development trust domain CA
//! and X.509-SVIDs. Not for production: keys are plain PEM files and there
//! is no revocation.

use crate::fail::{error, Result};
use crate::output::{report, Format};
use crate::pki::{cert_info, parse_spiffe_id, parse_trust_domain, read_certs};
use crate::util::{
    create_dir, format_utc, parse_duration, read_text, unix_now, write_secret, write_text,
};
use clap::{Args, Subcommand};
use custody_history::dev_ca::{self, CaOptions};
use custody_history::SpiffeId;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a development CA for a trust domain: DIR/bundle.pem,
    /// DIR/bundle.spiffe.json (SPIFFE bundle) and DIR/ca.key (mode 0600).
    Init {
        /// Trust domain, e.g. example.org.
        #[arg(long, value_name = "TD", value_parser = parse_trust_domain)]
        trust_domain: String,
        /// Directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// spiffe_sequence written in bundle.spiffe.json.
        #[arg(long, value_name = "N", default_value_t = 1)]
        sequence: u64,
        /// How long the CA certificate is valid (e.g. 365d, 90d12h).
        #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
        ttl: u64,
        #[command(flatten)]
        writing: Writing,
    },
    /// Issue an X.509-SVID from a CA directory: DIR2/svid.pem (the leaf,
    /// then any intermediates) and DIR2/svid.key (PKCS#8 PEM, mode 0600).
    Issue {
        /// CA directory: ca.key, and bundle.pem (or ca.pem, the signing
        /// intermediate followed by its chain, when the CA is an intermediate).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The SVID's SPIFFE ID; must be in the CA's trust domain and have a path.
        #[arg(long, value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
        id: SpiffeId,
        /// Directory to write to (created if missing).
        #[arg(long, value_name = "DIR2")]
        out: PathBuf,
        /// Validity (e.g. 24h, 30m); capped at the CA certificate's notAfter.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
        ttl: u64,
        /// A DNS name SAN for a server certificate (repeatable), e.g. localhost.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        #[command(flatten)]
        writing: Writing,
    },
}

/// What `ca init` and `ca issue` share: when the certificate's validity
/// starts, whether its key file may be replaced, how the result is printed.
#[derive(Args)]
pub struct Writing {
    /// Start the validity this long before now (to sign backdated test entries).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    backdate: u64,
    /// Replace an existing key file: DIR/ca.key (and with it every SVID it
    /// issued) or DIR2/svid.key.
    #[arg(long)]
    force: bool,
    /// How the result is printed.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            out,
            sequence,
            ttl,
            writing,
        } => init(&trust_domain, &out, sequence, ttl, &writing),
        CaCommand::Issue {
            ca,
            id,
            out,
            ttl,
            dns,
            writing,
        } => issue(&ca, &id, &out, ttl, &dns, &writing),
    }
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    if !force && path.exists() {
        return Err(error(format!(
            "{} exists; use --force to replace it",
            path.display()
        )));
    }
    Ok(())
}

fn init(td: &str, out: &Path, sequence: u64, ttl: u64, w: &Writing) -> Result<()> {
    if ttl == 0 {
        return Err(error("--ttl must be longer than 0s"));
    }
    let key_path = out.join("ca.key");
    refuse_overwrite(&key_path, w.force)?;
    let now = unix_now()?;
    let files = dev_ca::init_with(
        td,
        &CaOptions {
            not_before: now.saturating_sub(w.backdate),
            not_after: now.saturating_add(ttl),
            key_pem: None,
            sequence,
        },
    )?;
    create_dir(out)?;
    write_secret(&key_path, &files.ca_key_pem)?;
    write_text(&out.join("bundle.pem"), &files.bundle_pem)?;
    let mut json = files.bundle_spiffe_json;
    json.push('\n');
    write_text(&out.join("bundle.spiffe.json"), &json)?;
    let not_after = now.saturating_add(ttl);
    let (bundle, spiffe) = (out.join("bundle.pem"), out.join("bundle.spiffe.json"));
    report(
        w.format,
        format!(
            "CA for trust domain {td}, valid until {}\n  {}\n  {} (spiffe_sequence {sequence})\n  {} (mode 0600, keep it secret)\n",
            format_utc(not_after),
            bundle.display(),
            spiffe.display(),
            key_path.display(),
        ),
        json!({"trust_domain": td, "not_after": not_after, "spiffe_sequence": sequence,
               "bundle_pem": bundle, "bundle_spiffe_json": spiffe, "ca_key": key_path}),
    )
}

/// The signing CA of a CA directory: its certificate (PEM, DER) and the
/// certificates to send after an issued leaf (intermediates, not the root).
struct SigningCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    chain: Vec<Vec<u8>>,
    key_pem: String,
}

fn signing_ca(dir: &Path) -> Result<SigningCa> {
    let key_pem = read_text(&dir.join("ca.key"))?;
    let intermediate = dir.join("ca.pem");
    let (path, is_intermediate) = if intermediate.exists() {
        (intermediate, true)
    } else {
        (dir.join("bundle.pem"), false)
    };
    let ders = read_certs(&path)?;
    let first = ders
        .first()
        .cloned()
        .ok_or_else(|| error(format!("{}: no certificate", path.display())))?;
    let chain = if is_intermediate {
        ders.into_iter()
            .filter(|d| cert_info(d).map(|i| !i.self_signed).unwrap_or(true))
            .collect()
    } else {
        Vec::new()
    };
    Ok(SigningCa {
        cert_pem: pem::encode(&pem::Pem::new("CERTIFICATE", first.clone())),
        cert_der: first,
        chain,
        key_pem,
    })
}

fn issue(
    ca_dir: &Path,
    id: &SpiffeId,
    out: &Path,
    ttl: u64,
    dns: &[String],
    w: &Writing,
) -> Result<()> {
    if ttl == 0 {
        return Err(error("--ttl must be longer than 0s"));
    }
    if id.path().is_empty() {
        return Err(error(format!(
            "{id}: an X.509-SVID needs a SPIFFE ID with a path"
        )));
    }
    let ca = signing_ca(ca_dir)?;
    let info = cert_info(&ca.cert_der).map_err(|e| error(format!("{}: {e}", ca_dir.display())))?;
    let ca_td = crate::pki::authority_trust_domain(&ca.cert_der).ok_or_else(|| {
        error(format!(
            "{}: the CA certificate names no trust domain (one URI SAN spiffe://<trust domain>)",
            ca_dir.display()
        ))
    })?;
    if id.trust_domain() != ca_td {
        return Err(error(format!(
            "{id} is not in the CA's trust domain {ca_td}"
        )));
    }
    let key_path = out.join("svid.key");
    refuse_overwrite(&key_path, w.force)?;
    let now = unix_now()?;
    if info.not_after <= now {
        return Err(error(format!(
            "{}: the CA certificate expired at {}",
            ca_dir.display(),
            format_utc(info.not_after)
        )));
    }
    let not_after = now.saturating_add(ttl).min(info.not_after);
    let svid = issue_svid(&ca, id, dns, now.saturating_sub(w.backdate), not_after)?;
    create_dir(out)?;
    write_secret(&key_path, &svid.key_pem)?;
    let mut pem_text = svid.cert_pem;
    for der in &ca.chain {
        pem_text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())));
    }
    write_text(&out.join("svid.pem"), &pem_text)?;
    let dns_note = if dns.is_empty() {
        String::new()
    } else {
        format!(", DNS {}", dns.join(", "))
    };
    let svid_path = out.join("svid.pem");
    report(
        w.format,
        format!(
            "X.509-SVID {id}{dns_note}, valid until {}\n  {}\n  {} (mode 0600, keep it secret)\n",
            format_utc(not_after),
            svid_path.display(),
            key_path.display(),
        ),
        json!({"spiffe_id": id.as_str(), "dns": dns, "not_after": not_after,
               "svid": svid_path, "key": key_path}),
    )
}

struct IssuedSvid {
    cert_pem: String,
    key_pem: String,
}

/// An X.509-SVID from `dev_ca::issue_with`: one SPIFFE URI SAN, P-256 key,
/// not a CA, digitalSignature, serverAuth + clientAuth, plus DNS name SANs.
fn issue_svid(
    ca: &SigningCa,
    id: &SpiffeId,
    dns: &[String],
    not_before: u64,
    not_after: u64,
) -> Result<IssuedSvid> {
    for name in dns {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*');
        if !ok {
            return Err(error(format!("--dns {name:?}: not a DNS name")));
        }
    }
    let svid = dev_ca::issue_with(
        &ca.cert_pem,
        &ca.key_pem,
        &dev_ca::SvidOptions {
            uris: vec![id.as_str().to_owned()],
            not_before,
            not_after,
            ca: false,
            key_pem: None,
            dns: dns.to_vec(),
        },
    )
    .map_err(|e| error(format!("cannot issue the SVID: {}", e.0)))?;
    Ok(IssuedSvid {
        cert_pem: svid.cert_pem,
        key_pem: svid.key_pkcs8_pem,
    })
}
