#!/usr/bin/env bash
# The lab PKI: the one-shot compose service `pki` runs this in the gateway image and leaves
# everything in the volume mounted at /pki, which the other services mount read-only.
#
#   /pki/ca.crt                    the lab root CA (trusted by the gateway, the PBX, the phones)
#   /pki/ca/ca.key                 its key (only this script uses it)
#   /pki/gateway/{certs,trust}/    the gateway's certificate store and trust store, made with
#                                  mediagate's own commands: `cert request` (key + CSR),
#                                  the CA signs the CSR, `cert import`, `trust import`
#   /pki/NAME/NAME.{crt,key,pem}   certificate, key, and both in one file (baresip) for
#                                  pbx, alice, farend-tls, desktop (a softphone on the host)
#                                  and tester (`mediagate test-connectivity` from the host)
#   /pki/intruder/                 a second, untrusted CA and a certificate from it that
#                                  claims to be the PBX: the gateway must refuse it
#   /out/pki/                      (docker/out/pki on the host) the CA and the tester and
#                                  desktop certificates, for tools and softphones on the host
#
# Every certificate is EC P-256, serverAuth + clientAuth, valid for 30 days. An existing PKI
# in the volume is kept while it is complete and valid for at least one more day.
set -euo pipefail

P=${PKI_DIR:-/pki}
DAYS=30
say() { printf 'pki: %s\n' "$*"; }

# What a tool or softphone on the host needs (docker/README.md), in docker/out/pki when /out
# is mounted: the CA, and the "tester" and "desktop" certificates with their keys.
export_for_host() {
    [[ -d /out ]] || return 0
    rm -rf /out/pki
    mkdir -p /out/pki/trust /out/pki/tester /out/pki/desktop
    cp "$P/ca.crt" /out/pki/ca.crt
    cp "$P/ca.crt" /out/pki/trust/lab-ca.crt
    cp "$P/tester/tester.crt" "$P/tester/tester.key" /out/pki/tester/
    cp "$P/desktop/desktop.crt" "$P/desktop/desktop.key" "$P/desktop/desktop.pem" /out/pki/desktop/
    chmod 600 /out/pki/*/*.key /out/pki/desktop/desktop.pem
    say "exported the CA and the host's certificates to docker/out/pki"
}

if [[ -f $P/.complete ]] && openssl x509 -checkend 86400 -noout -in "$P/ca.crt" >/dev/null 2>&1 &&
    openssl x509 -checkend 86400 -noout -in "$P/alice/alice.crt" >/dev/null 2>&1; then
    say "the lab PKI in $P is complete and valid: kept"
    export_for_host
    exit 0
fi
say "creating the lab PKI in $P"
find "$P" -mindepth 1 -delete
umask 022

# A self-signed CA: ca_new DIR CN
ca_new() {
    mkdir -p "$1"
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1/ca.key"
    chmod 600 "$1/ca.key"
    openssl req -new -x509 -key "$1/ca.key" -subj "/O=mediagate lab/CN=$2" -days $DAYS \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$1/ca.crt"
}

# Signs a CSR with a CA: sign CADIR CSR OUT [EXTFILE]. Without EXTFILE the CSR's extensions
# are copied (mediagate's CSR carries its SANs and both purposes).
sign() {
    local ext=()
    if [[ -n ${4:-} ]]; then ext=(-extfile "$4"); else ext=(-copy_extensions copy); fi
    openssl x509 -req -in "$2" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial \
        -days $DAYS -sha256 "${ext[@]}" -out "$3" 2>"$3.err" || { cat "$3.err" >&2; exit 1; }
    rm -f "$3.err"
}

# A leaf certificate: leaf CADIR NAME SAN... (SAN entries as openssl writes them:
# DNS:x, IP:y). Writes $P/NAME/NAME.{key,csr,crt,pem}.
leaf() {
    local ca=$1 name=$2 d=$P/$2
    shift 2
    local san
    san=$(IFS=,; echo "$*")
    mkdir -p "$d"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/$name.key" -subj "/O=mediagate lab/CN=$name" -out "$d/$name.csr" \
        2>"$d/req.err" || { cat "$d/req.err" >&2; exit 1; }
    rm -f "$d/req.err"
    chmod 600 "$d/$name.key"
    cat >"$d/ext.cnf" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san
EOF
    sign "$ca" "$d/$name.csr" "$d/$name.crt" "$d/ext.cnf"
    rm -f "$d/ext.cnf" "$d/$name.csr"
    cat "$d/$name.crt" "$d/$name.key" >"$d/$name.pem"
    chmod 600 "$d/$name.pem"
    say "$name: $(openssl x509 -noout -ext subjectAltName -in "$d/$name.crt" | tail -n1 | xargs)"
}

ca_new "$P/ca" "mediagate lab root CA"
cp "$P/ca/ca.crt" "$P/ca.crt"

# The gateway, the way an operator enrols it (README "Using a private PKI").
G=$P/gateway
mkdir -p "$G/certs" "$G/trust"
mediagate --cert-dir "$G/certs" --trust-dir "$G/trust" \
    cert request --fqdn gateway --san 172.28.0.10 >/dev/null
sign "$P/ca" "$G/certs/pending/gateway.csr" "$G/gateway.crt"
mediagate --cert-dir "$G/certs" --trust-dir "$G/trust" cert import "$G/gateway.crt" >/dev/null
mediagate --cert-dir "$G/certs" --trust-dir "$G/trust" trust import "$P/ca.crt" >/dev/null
say "gateway: $(mediagate --cert-dir "$G/certs" --trust-dir "$G/trust" cert show | grep -E '^ +(SANs|thumbprint):' | xargs)"

leaf "$P/ca" pbx DNS:pbx IP:172.28.0.20
leaf "$P/ca" alice DNS:alice IP:172.28.0.40
leaf "$P/ca" farend-tls DNS:farend-tls IP:172.28.0.30
leaf "$P/ca" desktop DNS:desktop
leaf "$P/ca" tester DNS:tester

# The intruder: its own CA, which nobody in the lab trusts, and a certificate that claims
# the PBX's name.
ca_new "$P/intruder/ca" "intruder's own CA"
leaf "$P/intruder/ca" intruder DNS:pbx IP:172.28.0.50
mv "$P/intruder/ca/ca.crt" "$P/intruder/intruder-ca.crt"

rm -f "$P"/ca/*.srl "$P"/intruder/ca/*.srl
touch "$P/.complete"
export_for_host
say "done"
