#!/usr/bin/python3
# hacli testlab: STAND-INS for kubeadm, kubelet, kube-apiserver,
# kube-controller-manager, kube-scheduler, systemctl, crictl and containerd on a lab
# host (crates/testlab/src/cluster.rs installs this file as
# /usr/local/lib/testlab/standin.py and links each name in /usr/local/bin to
# it). They take the real programs' flags, print the real programs' lines and
# have the real effects on the host: kubeadm's paths, a real etcd member,
# real certificates from the cluster CA (openssl). Not the real programs.
import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import yaml

LAB = "/etc/testlab"
# Namespaces whose ConfigMaps the apiserver stand-in keeps in etcd (a line each).
ETCD_NAMESPACES = LAB + "/etcd-namespaces"
K = "/etc/kubernetes"
PKI = K + "/pki"
MANIFESTS = K + "/manifests"
RUN = "/run/testlab"
PODS = RUN + "/pods"
UNITS = RUN + "/units"
LOGS = "/var/log/testlab"
KUBELET_DIR = "/var/lib/kubelet"
ETCD_DIR = "/var/lib/etcd"

CP_LABEL = "node-role.kubernetes.io/control-plane"
EXCLUDE_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
CP_TAINT = {"key": CP_LABEL, "effect": "NoSchedule"}


class Fail(Exception):
    pass


def out(line=""):
    print(line, flush=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def lab():
    try:
        with open(LAB + "/lab.json") as f:
            return json.load(f)
    except OSError as e:
        raise Fail(f"{LAB}/lab.json: {e} (the lab did not provision this host)")


def versions():
    v = {"kubeadm": "v1.32.0", "kubelet": "v1.32.0", "containerd": "1.7.24"}
    try:
        with open(LAB + "/versions.json") as f:
            v.update(json.load(f))
    except OSError:
        pass
    return v


def write_file(path, data, mode=0o644):
    """Atomically: a temp file in the same directory, then rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def node_ip():
    """This host's address on the lab network (the route to the gateway)."""
    store = lab()["store"]
    host = store.rsplit(":", 1)[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    finally:
        s.close()


def hostname():
    return socket.gethostname()


def run(argv, check=True, env=None, timeout=60):
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise Fail(f"{argv[0]} {' '.join(argv[1:3])}... failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


# ---------------------------------------------------------------- PKI

def openssl(*args, input=None):
    p = subprocess.run(["openssl", *args], capture_output=True, input=input, timeout=60)
    if p.returncode != 0:
        raise Fail(f"openssl {args[0]}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def new_key(path, rsa=False):
    if rsa:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path + ".tmp")
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path + ".tmp")
    os.chmod(path + ".tmp", 0o600)
    return path + ".tmp"


def make_ca(base, cn):
    """base.crt/base.key: a self-signed CA, 10 years."""
    os.makedirs(os.path.dirname(base), exist_ok=True)
    key = new_key(base + ".key")
    openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=" + cn, "-days", "3650",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-out", base + ".crt.tmp")
    os.rename(key, base + ".key")
    os.rename(base + ".crt.tmp", base + ".crt")


def issue(base, ca, cn, orgs=(), server=False, client=False, dns=(), ips=()):
    """base.crt/base.key signed by ca(.crt/.key): the key is renamed into
    place first, then the certificate, so that a reader that loads both
    together sees a matching pair once the certificate changed."""
    os.makedirs(os.path.dirname(base), exist_ok=True)
    key = new_key(base + ".key")
    subj = "".join("/O=" + o for o in orgs) + "/CN=" + cn
    csr = openssl("req", "-new", "-key", key, "-subj", subj)
    eku = ",".join(x for x, on in (("serverAuth", server), ("clientAuth", client)) if on)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
           "extendedKeyUsage=" + eku]
    sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    with tempfile.NamedTemporaryFile("w", suffix=".ext") as f:
        f.write("\n".join(ext) + "\n")
        f.flush()
        openssl("x509", "-req", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                "-set_serial", str(secrets.randbits(63)), "-days", "365", "-extfile", f.name,
                "-out", base + ".crt.tmp", input=csr)
    os.rename(key, base + ".key")
    os.rename(base + ".crt.tmp", base + ".crt")


def ca_hash(ca_pem):
    der = openssl("x509", "-pubkey", "-noout", input=ca_pem)
    der = openssl("pkey", "-pubin", "-outform", "der", input=der)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def dedupe(seq):
    seen, res = set(), []
    for x in seq:
        if x and x not in seen:
            seen.add(x)
            res.append(x)
    return res


def is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def apiserver_sans(cc, name, advertise):
    dom = (cc.get("networking") or {}).get("dnsDomain") or "cluster.local"
    svc = (cc.get("networking") or {}).get("serviceSubnet") or "10.96.0.0/12"
    svc_ip = str(next(ipaddress.ip_network(svc.split(",")[0], strict=False).hosts()))
    dns = [name, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + dom]
    ips = [svc_ip, advertise]
    extra = list(cc.get("apiServer", {}).get("certSANs") or [])
    ep = cc.get("controlPlaneEndpoint")
    if ep:
        extra.append(split_hostport(ep)[0])
    for s in extra:
        (ips if is_ip(s) else dns).append(s)
    return dedupe(dns), dedupe(ips)


def split_hostport(ep):
    ep = ep.replace("https://", "")
    if ep.startswith("["):
        h, _, p = ep[1:].partition("]:")
        return h, int(p or 6443)
    h, _, p = ep.rpartition(":") if ":" in ep else (ep, "", "")
    return h, int(p or 6443)


def certs_apiserver(cc, name, advertise):
    crt, key = PKI + "/apiserver.crt", PKI + "/apiserver.key"
    if os.path.exists(crt) or os.path.exists(key):
        out("[certs] Using existing apiserver certificate and key on disk")
        return
    dns, ips = apiserver_sans(cc, name, advertise)
    out('[certs] Generating "apiserver" certificate and key')
    out(f"[certs] apiserver serving cert is signed for DNS names [{' '.join(dns)}] and IPs [{' '.join(ips)}]")
    issue(PKI + "/apiserver", PKI + "/ca", "kube-apiserver", server=True, dns=dns, ips=ips)


def node_certs(cc, name, advertise, init):
    """Every certificate of a control-plane node but the CAs and sa."""
    out(f'[certs] Using certificateDir folder "{PKI}"')
    if init:
        for base, cn in ((PKI + "/ca", "kubernetes"), (PKI + "/front-proxy-ca", "front-proxy-ca"),
                         (PKI + "/etcd/ca", "etcd-ca")):
            if not os.path.exists(base + ".crt"):
                out(f'[certs] Generating "{os.path.relpath(base, PKI)}" certificate and key')
                make_ca(base, cn)
        if not os.path.exists(PKI + "/sa.key"):
            out('[certs] Generating "sa" key and public key')
            k = new_key(PKI + "/sa.key", rsa=True)
            write_file(PKI + "/sa.pub", openssl("pkey", "-in", k, "-pubout"))
            os.rename(k, PKI + "/sa.key")
    certs_apiserver(cc, name, advertise)
    local = ["localhost", name]
    loop = ["127.0.0.1", "0:0:0:0:0:0:0:1", advertise]
    for base, ca, cn, orgs, srv, cli, dns, ips in (
        ("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", ["kubeadm:cluster-admins"], False, True, (), ()),
        ("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], False, True, (), ()),
        ("etcd/server", "etcd/ca", name, [], True, True, local, loop),
        ("etcd/peer", "etcd/ca", name, [], True, True, local, loop),
        ("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", [], False, True, (), ()),
        ("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", [], False, True, (), ()),
    ):
        if os.path.exists(f"{PKI}/{base}.crt"):
            out(f'[certs] Using the existing "{base}" certificate and key')
            continue
        out(f'[certs] Generating "{base}" certificate and key')
        issue(f"{PKI}/{base}", f"{PKI}/{ca}", cn, orgs, srv, cli, dns, ips)


# ---------------------------------------------------------------- kubeconfigs

def kubeconfig_text(server, user, cert_pem=None, key_pem=None, token=None, cert_file=None, cluster="kubernetes"):
    ca = read(PKI + "/ca.crt")
    u = {}
    if cert_file:
        u = {"client-certificate": cert_file, "client-key": cert_file}
    elif cert_pem:
        u = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
    if token:
        u["token"] = token
    ctx = f"{user}@{cluster}"
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"certificate-authority-data": b64(ca), "server": server}}],
        "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": user}}],
        "current-context": ctx, "preferences": {},
        "users": [{"name": user, "user": u}],
    }, sort_keys=False)


def client_pair(cn, orgs):
    with tempfile.TemporaryDirectory() as d:
        issue(d + "/c", PKI + "/ca", cn, orgs, client=True)
        return read(d + "/c.crt"), read(d + "/c.key")


def write_kubeconfig(name, server, cn, orgs):
    c, k = client_pair(cn, orgs)
    out(f'[kubeconfig] Writing "{name}" kubeconfig file')
    write_file(f"{K}/{name}", kubeconfig_text(server, cn if name != "admin.conf" else "kubernetes-admin", c, k), 0o600)


def write_kubelet_conf(server, name):
    """kubelet.conf naming its client pair in /var/lib/kubelet/pki, as after
    the kubelet's TLS bootstrap (the stand-in signs it with the CA key when
    it has one; a worker authenticates with its bootstrap token instead)."""
    cur = KUBELET_DIR + "/pki/kubelet-client-current.pem"
    c, k = client_pair(f"system:node:{name}", ["system:nodes"])
    write_file(cur, c + k, 0o600)
    write_file(K + "/kubelet.conf", kubeconfig_text(server, "default-auth", cert_file=cur, cluster="default-cluster"), 0o600)


class Kubeconfig:
    def __init__(self, path):
        try:
            with open(path) as f:
                cfg = yaml.safe_load(f)
        except OSError as e:
            raise Fail(f"{path}: {e}")
        try:
            cur = cfg.get("current-context")
            ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cur)
            cl = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
            us = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        except (KeyError, StopIteration, TypeError) as e:
            raise Fail(f"{path}: not a usable kubeconfig ({e})")
        self.path = path
        self.server = cl["server"]
        if "certificate-authority-data" in cl:
            self.ca = base64.b64decode(cl["certificate-authority-data"])
        else:
            self.ca = read(cl["certificate-authority"])
        self.cert = self.key = None
        if "client-certificate-data" in us:
            self.cert = base64.b64decode(us["client-certificate-data"])
            self.key = base64.b64decode(us["client-key-data"])
        elif "client-certificate" in us:
            self.cert = read(us["client-certificate"])
            self.key = read(us.get("client-key", us["client-certificate"]))
        self.token = us.get("token")

    def api(self):
        return Api(self.server, self.ca, self.cert, self.key, self.token)


class Api:
    """A small Kubernetes API client (JSON over HTTPS)."""

    def __init__(self, server, ca_pem, cert=None, key=None, token=None, insecure=False, timeout=10):
        self.host, self.port = split_hostport(server)
        self.timeout = timeout
        ctx = ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.load_verify_locations(cadata=ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
        if cert:
            with tempfile.NamedTemporaryFile() as f:
                f.write(cert + b"\n" + key)
                f.flush()
                ctx.load_cert_chain(f.name)
        self.ctx = ctx
        self.token = token

    def call(self, method, path, body=None, ctype="application/json"):
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
        try:
            h = {"Accept": "application/json"}
            if self.token:
                h["Authorization"] = "Bearer " + self.token
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = ctype
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                v = json.loads(raw) if raw else None
            except ValueError:
                v = raw.decode(errors="replace")
            return r.status, v
        finally:
            c.close()

    def must(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        st, v = self.call(method, path, body, ctype)
        if st not in ok:
            msg = v.get("message") if isinstance(v, dict) else v
            raise Fail(f"{method} {path} on https://{self.host}:{self.port}: {st}: {msg}")
        return v

    def get(self, path):
        st, v = self.call("GET", path)
        return v if st == 200 else None

    def apply(self, path_coll, obj):
        """Create, or replace the existing object."""
        name = obj["metadata"]["name"]
        st, v = self.call("POST", path_coll, obj)
        if st == 409:
            cur = self.must("GET", f"{path_coll}/{name}")
            obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            return self.must("PUT", f"{path_coll}/{name}", obj)
        if st not in (200, 201):
            raise Fail(f"POST {path_coll}: {st}: {v.get('message') if isinstance(v, dict) else v}")
        return v

    def patch(self, path, patch):
        return self.must("PATCH", path, patch, "application/merge-patch+json")


# ---------------------------------------------------------------- config files

# The kubeadm configuration API versions kubeadm 1.31+ reads.
KUBEADM_API_VERSIONS = ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4")


def load_config(path):
    """(InitConfiguration or JoinConfiguration, ClusterConfiguration) of a
    kubeadm --config file (multi-document YAML)."""
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
    except OSError as e:
        raise Fail(f"--config {path}: {e}")
    except yaml.YAMLError as e:
        raise Fail(f"--config {path}: not YAML: {e}")
    local, cc = {}, {}
    for d in docs:
        if not isinstance(d, dict):
            raise Fail(f"--config {path}: a document is not a mapping")
        if d.get("apiVersion") not in KUBEADM_API_VERSIONS:
            raise Fail(f'--config {path}: no kind "{d.get("kind")}" is registered for version "{d.get("apiVersion")}" '
                       f'in scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"')
        if d.get("kind") == "ClusterConfiguration":
            cc = d
        elif d.get("kind") in ("InitConfiguration", "JoinConfiguration"):
            local = d
    return local, cc


def cluster_config(api):
    cm = api.get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    if not cm:
        raise Fail('unable to fetch the kubeadm-config ConfigMap: configmaps "kubeadm-config" not found')
    return yaml.safe_load(cm["data"]["ClusterConfiguration"]) or {}


def upload_config(api, cc, k8s_version):
    cc = dict(cc)
    cc.setdefault("apiVersion", "kubeadm.k8s.io/v1beta4")
    cc["kind"] = "ClusterConfiguration"
    cc.setdefault("kubernetesVersion", k8s_version)
    cc.setdefault("clusterName", "kubernetes")
    cc.setdefault("certificatesDir", PKI)
    cc.setdefault("networking", {"dnsDomain": "cluster.local", "serviceSubnet": "10.96.0.0/12"})
    cc.setdefault("etcd", {"local": {"dataDir": ETCD_DIR}})
    out('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    api.apply("/api/v1/namespaces/kube-system/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": yaml.safe_dump(cc, sort_keys=False)},
    })


# ---------------------------------------------------------------- manifests

def manifest(name, command, annotations, image, volumes=()):
    container = {"name": name, "image": image, "command": command}
    spec = {"hostNetwork": True, "priorityClassName": "system-node-critical", "containers": [container]}
    if volumes:
        # As kubeadm writes extraVolumes: a hostPath volume and its mount.
        container["volumeMounts"] = [{"name": v["name"], "mountPath": v["mountPath"],
                                      "readOnly": bool(v.get("readOnly", False))} for v in volumes]
        spec["volumes"] = [{"name": v["name"], "hostPath": {"path": v["hostPath"],
                                                            "type": v.get("pathType", "")}} for v in volumes]
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "annotations": annotations,
                     "labels": {"component": name, "tier": "control-plane"}},
        "spec": spec,
        "status": {},
    }, sort_keys=False)


def write_manifest(name, command, annotations, version, volumes=()):
    out(f'[control-plane] Creating static Pod manifest for "{name}"' if name != "etcd"
        else '[etcd] Creating static Pod manifest for "etcd"')
    image = f"registry.k8s.io/{name}:{version}" if name != "etcd" else "registry.k8s.io/etcd:3.5.16-0"
    write_file(f"{MANIFESTS}/{name}.yaml", manifest(name, command, annotations, image, volumes), 0o600)


def extra_args(part):
    """A component's extraArgs as kubeadm reads them: v1beta3's map or
    v1beta4's list of {name, value}."""
    extra = (part or {}).get("extraArgs") or {}
    if isinstance(extra, list):
        extra = {a["name"]: a.get("value", "") for a in extra}
    return {k: ("" if v is None else str(v)) for k, v in extra.items()}


def with_extra(cmd, part):
    """kubeadm's command line: its own flags overridden by extraArgs, in
    name order, as kubeadm's ArgumentsToCommand writes them."""
    args = {}
    for w in cmd[1:]:
        k, _, v = w[2:].partition("=")
        args[k] = v
    args.update(extra_args(part))
    return [cmd[0]] + [f"--{k}={v}" for k, v in sorted(args.items())]


def control_plane_pods(cc, advertise):
    """What kubeadm makes of the ClusterConfiguration `cc` on a master that
    advertises `advertise`: {component: (command, annotations, extraVolumes)}."""
    svc = (cc.get("networking") or {}).get("serviceSubnet") or "10.96.0.0/12"
    api_cmd = ["kube-apiserver", f"--advertise-address={advertise}", "--allow-privileged=true",
               "--authorization-mode=Node,RBAC", f"--client-ca-file={PKI}/ca.crt",
               "--enable-admission-plugins=NodeRestriction", "--enable-bootstrap-token-auth=true",
               f"--etcd-cafile={PKI}/etcd/ca.crt", f"--etcd-certfile={PKI}/apiserver-etcd-client.crt",
               f"--etcd-keyfile={PKI}/apiserver-etcd-client.key", "--etcd-servers=https://127.0.0.1:2379",
               f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
               f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
               f"--proxy-client-cert-file={PKI}/front-proxy-client.crt",
               f"--proxy-client-key-file={PKI}/front-proxy-client.key",
               f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt", "--secure-port=6443",
               f"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
               f"--service-account-key-file={PKI}/sa.pub",
               f"--service-account-signing-key-file={PKI}/sa.key",
               f"--service-cluster-ip-range={svc}", f"--tls-cert-file={PKI}/apiserver.crt",
               f"--tls-private-key-file={PKI}/apiserver.key"]
    cm_cmd = [
        "kube-controller-manager", f"--authentication-kubeconfig={K}/controller-manager.conf",
        f"--authorization-kubeconfig={K}/controller-manager.conf", "--bind-address=127.0.0.1",
        f"--client-ca-file={PKI}/ca.crt", f"--cluster-signing-cert-file={PKI}/ca.crt",
        f"--cluster-signing-key-file={PKI}/ca.key", f"--kubeconfig={K}/controller-manager.conf",
        "--leader-elect=true", f"--root-ca-file={PKI}/ca.crt",
        f"--service-account-private-key-file={PKI}/sa.key", "--use-service-account-credentials=true"]
    sched_cmd = [
        "kube-scheduler", f"--authentication-kubeconfig={K}/scheduler.conf",
        f"--authorization-kubeconfig={K}/scheduler.conf", "--bind-address=127.0.0.1",
        f"--kubeconfig={K}/scheduler.conf", "--leader-elect=true"]
    pods = {}
    for name, key, cmd, ann in (
            ("kube-apiserver", "apiServer", api_cmd,
             {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{advertise}:6443"}),
            ("kube-controller-manager", "controllerManager", cm_cmd, {}),
            ("kube-scheduler", "scheduler", sched_cmd, {})):
        part = cc.get(key) or {}
        pods[name] = (with_extra(cmd, part), ann, part.get("extraVolumes") or [])
    return pods


def control_plane_manifests(cc, advertise, version):
    for name, (cmd, ann, vols) in control_plane_pods(cc, advertise).items():
        write_manifest(name, cmd, ann, version, vols)


def etcd_manifest(name, advertise, initial_cluster, state):
    cmd = ["etcd", f"--advertise-client-urls=https://{advertise}:2379",
           f"--cert-file={PKI}/etcd/server.crt", "--client-cert-auth=true", f"--data-dir={ETCD_DIR}",
           f"--initial-advertise-peer-urls=https://{advertise}:2380", f"--initial-cluster={initial_cluster}"]
    if state == "existing":
        cmd.append("--initial-cluster-state=existing")
    cmd += [f"--key-file={PKI}/etcd/server.key",
            f"--listen-client-urls=https://127.0.0.1:2379,https://{advertise}:2379",
            "--listen-metrics-urls=http://127.0.0.1:2381", f"--listen-peer-urls=https://{advertise}:2380",
            f"--name={name}", f"--peer-cert-file={PKI}/etcd/peer.crt", "--peer-client-cert-auth=true",
            f"--peer-key-file={PKI}/etcd/peer.key", f"--peer-trusted-ca-file={PKI}/etcd/ca.crt",
            "--snapshot-count=10000", f"--trusted-ca-file={PKI}/etcd/ca.crt"]
    write_manifest("etcd", cmd, {"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{advertise}:2379"}, "")


# ---------------------------------------------------------------- etcd

def etcdctl(endpoints, *args, timeout=15, check=True):
    env = dict(os.environ, ETCDCTL_API="3")
    return run(["etcdctl", f"--endpoints={','.join(endpoints)}", f"--cacert={PKI}/etcd/ca.crt",
                f"--cert={PKI}/apiserver-etcd-client.crt", f"--key={PKI}/apiserver-etcd-client.key",
                "--dial-timeout=5s", f"--command-timeout={timeout}s", *args], env=env, timeout=timeout + 10,
               check=check)


def member_list(endpoints):
    p = etcdctl(endpoints, "member", "list", "-w", "json")
    return json.loads(p.stdout).get("members", [])


def etcd_endpoints(api):
    """Client URLs of the cluster's etcd members, as kubeadm finds them: the
    annotation of the etcd static Pods."""
    pods = api.must("GET", "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd%2Ctier%3Dcontrol-plane")
    urls = []
    for p in pods.get("items", []):
        u = (p["metadata"].get("annotations") or {}).get("kubeadm.kubernetes.io/etcd.advertise-client-urls")
        if u:
            urls.append(u)
    if not urls:
        raise Fail("could not retrieve the list of etcd endpoints: no etcd Pods in kube-system")
    return dedupe(urls)


# ---------------------------------------------------------------- bootstrap tokens

def token_secret(api, tid):
    return api.get(f"/api/v1/namespaces/kube-system/secrets/bootstrap-token-{tid}")


def token_expired(sec):
    exp = sec.get("data", {}).get("expiration")
    if not exp:
        return False
    return parse_time(base64.b64decode(exp).decode()) <= now()


def create_token(api, ttl_s, description=None, usages=("authentication", "signing")):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    tid = "".join(secrets.choice(alphabet) for _ in range(6))
    tsec = "".join(secrets.choice(alphabet) for _ in range(16))
    data = {"token-id": b64(tid), "token-secret": b64(tsec),
            "auth-extra-groups": b64("system:bootstrappers:kubeadm:default-node-token")}
    for u in usages:
        data[f"usage-bootstrap-{u}"] = b64("true")
    if ttl_s:
        data["expiration"] = b64(rfc3339(now() + datetime.timedelta(seconds=ttl_s)))
    if description:
        data["description"] = b64(description)
    sec = api.must("POST", "/api/v1/namespaces/kube-system/secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"}, "data": data})
    record_issued("token", f"{tid}.{tsec}")
    return f"{tid}.{tsec}", sec


ISSUED = LAB + "/issued-secrets"


def record_issued(kind, value):
    """The lab's own record of the secrets issued here (not kubeadm's): the
    tests search hacli's outputs and files for these values."""
    os.makedirs(LAB, exist_ok=True)
    with open(ISSUED, "a") as f:
        f.write(f"{kind} {value}\n")


def parse_duration(s):
    mult = {"h": 3600, "m": 60, "s": 1}
    total, num = 0, ""
    for ch in s:
        if ch.isdigit():
            num += ch
        elif ch in mult and num:
            total += int(num) * mult[ch]
            num = ""
        else:
            raise Fail(f"invalid duration {s!r}")
    if num:
        total += int(num)
    return total


# ---------------------------------------------------------------- kubeadm-certs

CERT_FILES = {"ca.crt": "ca.crt", "ca.key": "ca.key", "sa.key": "sa.key", "sa.pub": "sa.pub",
              "front-proxy-ca.crt": "front-proxy-ca.crt", "front-proxy-ca.key": "front-proxy-ca.key",
              "etcd-ca.crt": "etcd/ca.crt", "etcd-ca.key": "etcd/ca.key"}


def _stream(key, nonce, n):
    out_ = b""
    i = 0
    while len(out_) < n:
        out_ += hashlib.sha256(key + nonce + i.to_bytes(8, "big")).digest()
        i += 1
    return out_[:n]


def seal(key, data):
    """Stand-in for kubeadm's AES-GCM: SHA-256 keystream + HMAC tag."""
    nonce = secrets.token_bytes(16)
    ct = bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data))))
    return nonce + ct + hmac.new(key, nonce + ct, hashlib.sha256).digest()


def unseal(key, blob):
    nonce, ct, tag = blob[:16], blob[16:-32], blob[-32:]
    if not hmac.compare_digest(tag, hmac.new(key, nonce + ct, hashlib.sha256).digest()):
        raise Fail("error downloading certs: error decoding secret data with provided key: cipher: message authentication failed")
    return bytes(a ^ b for a, b in zip(ct, _stream(key, nonce, len(ct))))


def parse_cert_key(k):
    k = k.strip()
    if len(k) != 64 or any(c not in "0123456789abcdef" for c in k):
        raise Fail("invalid certificate key: it must be 64 hexadecimal characters (32 bytes)")
    return bytes.fromhex(k)


def upload_certs(api, key_hex):
    key = parse_cert_key(key_hex)
    # As kubeadm: a bootstrap token with a 2 h TTL owns the Secret; when the
    # token expires, the Secret goes with it.
    out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    _, tok = create_token(api, 2 * 3600, "Proxy for managing TTL for the kubeadm-certs secret", ())
    data = {}
    for k, rel in CERT_FILES.items():
        data[k] = b64(seal(key, read(f"{PKI}/{rel}")))
    sec = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "kubeadm-certs", "namespace": "kube-system",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": tok["metadata"]["name"],
                                             "uid": tok["metadata"]["uid"], "controller": True,
                                             "blockOwnerDeletion": True}]},
           "data": data}
    api.call("DELETE", "/api/v1/namespaces/kube-system/secrets/kubeadm-certs")
    api.must("POST", "/api/v1/namespaces/kube-system/secrets", sec)


def download_certs(api, key_hex):
    key = parse_cert_key(key_hex)
    out('[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    sec = api.get("/api/v1/namespaces/kube-system/secrets/kubeadm-certs")
    gone = sec is None
    if sec is not None:
        # The garbage collector's part: the owner token expired or is gone.
        for o in sec["metadata"].get("ownerReferences") or []:
            owner = api.get(f"/api/v1/namespaces/kube-system/secrets/{o['name']}")
            if owner is None or token_expired(owner):
                gone = True
                api.call("DELETE", "/api/v1/namespaces/kube-system/secrets/kubeadm-certs")
    if gone:
        raise Fail('error downloading certs: error downloading the secret: Secret "kubeadm-certs" was not found')
    for k, rel in CERT_FILES.items():
        blob = base64.b64decode(sec["data"][k])
        write_file(f"{PKI}/{rel}", unseal(key, blob), 0o600 if k.endswith(".key") else 0o644)
    out(f'[download-certs] Saving the certificates to the folder: "{PKI}"')


# ---------------------------------------------------------------- kubeadm

def flags(argv, boolean=()):
    """(positionals, {flag: value}) of Go-style --flag=value / --flag value."""
    pos, fl = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and a != "-":
            name, eq, val = a.lstrip("-").partition("=")
            if eq:
                fl[name] = val
            elif name in boolean:
                fl[name] = "true"
            elif i + 1 < len(argv):
                fl[name] = argv[i + 1]
                i += 1
            else:
                raise Fail(f"flag needs an argument: --{name}")
        else:
            pos.append(a)
        i += 1
    return pos, fl


BOOL_FLAGS = ("control-plane", "force", "etcd-upgrade", "certificate-renewal", "upload-certs", "print-join-command", "f", "force", "skip-token-print",
              "skip-certificate-key-print", "y", "yes", "dry-run", "discovery-token-unsafe-skip-ca-verification",
              "cleanup-tmp-dir", "h", "help")


# The flags kubeadm accepts beside --config (cmd/kubeadm/app/apis/kubeadm/
# validation: isAllowedFlag).
CONFIG_MIX_OK = ("config", "ignore-preflight-errors", "dry-run", "kubeconfig", "node-name", "kubeconfig-dir",
                 "upload-certs", "print-manifest", "allow-missing-template-keys", "output", "show-managed-fields",
                 "print-join-command", "rootfs", "v", "log-file", "yes")


def admin_api(fl):
    return Kubeconfig(fl.get("kubeconfig", K + "/admin.conf")).api()


def wait_node(api, name, secs):
    until = time.time() + secs
    while time.time() < until:
        if api.get(f"/api/v1/nodes/{name}"):
            return
        time.sleep(0.3)
    raise Fail(f"timed out waiting for the Node {name} to register (is the kubelet running? see {LOGS}/kubelet.log)")


def mark_control_plane(api, name):
    out(f"[mark-control-plane] Marking the node {name} as control-plane by adding the labels: [{CP_LABEL} {EXCLUDE_LB}]")
    out(f"[mark-control-plane] Marking the node {name} as control-plane by adding the taints [{CP_LABEL}:NoSchedule]")
    node = api.must("GET", f"/api/v1/nodes/{name}")
    taints = [t for t in (node["spec"].get("taints") or []) if t.get("key") != CP_LABEL] + [CP_TAINT]
    api.patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": {CP_LABEL: "", EXCLUDE_LB: ""}},
                                        "spec": {"taints": taints}})


def start_kubelet():
    out(f'[kubelet-start] Writing kubelet configuration to file "{KUBELET_DIR}/config.yaml"')
    write_file(KUBELET_DIR + "/config.yaml", yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "staticPodPath": MANIFESTS, "cgroupDriver": "systemd",
        "clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local"}))
    out("[kubelet-start] Starting the kubelet")
    unit_restart("kubelet")


def wait_api(server_host, port, secs):
    until = time.time() + secs
    t0 = time.time()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while time.time() < until:
        try:
            c = http.client.HTTPSConnection(server_host, port, context=ctx, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                out(f"[api-check] The API server is healthy after {time.time() - t0:.3f}s")
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.3)
    raise Fail(f"the API server at {server_host}:{port} did not become ready within {secs}s")


def kubeadm_init(fl):
    local, cc = load_config(fl["config"]) if "config" in fl else ({}, {})
    v = versions()
    name = ((local.get("nodeRegistration") or {}).get("name")) or hostname()
    advertise = ((local.get("localAPIEndpoint") or {}).get("advertiseAddress")) or node_ip()
    k8s = cc.get("kubernetesVersion") or v["kubeadm"]
    out(f"[init] Using Kubernetes version: {k8s}")
    out("[preflight] Running pre-flight checks")
    if os.path.exists(K + "/kubelet.conf") or os.path.exists(MANIFESTS + "/kube-apiserver.yaml"):
        raise Fail("[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists")
    node_certs(cc, name, advertise, init=True)
    server = f"https://{cc['controlPlaneEndpoint']}" if cc.get("controlPlaneEndpoint") else f"https://{advertise}:6443"
    local_server = f"https://{advertise}:6443"
    out(f'[kubeconfig] Using kubeconfig folder "{K}"')
    write_kubeconfig("admin.conf", server, "kubernetes-admin", ["kubeadm:cluster-admins"])
    write_kubeconfig("super-admin.conf", server, "kubernetes-super-admin", ["system:masters"])
    out('[kubeconfig] Writing "kubelet.conf" kubeconfig file')
    write_kubelet_conf(server, name)
    write_kubeconfig("controller-manager.conf", local_server, "system:kube-controller-manager", [])
    write_kubeconfig("scheduler.conf", local_server, "system:kube-scheduler", [])
    etcd_manifest(name, advertise, f"{name}=https://{advertise}:2380", "new")
    out(f'[control-plane] Using manifest folder "{MANIFESTS}"')
    control_plane_manifests(cc, advertise, k8s)
    start_kubelet()
    out(f'[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory "{MANIFESTS}"')
    wait_api(advertise, 6443, 120)
    api = Kubeconfig(K + "/super-admin.conf").api()
    upload_config(api, cc, k8s)
    api.apply("/api/v1/namespaces/kube-system/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
        "data": {"kubelet": read(KUBELET_DIR + "/config.yaml").decode()}})
    out('[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the configuration for the kubelets in the cluster')
    wait_node(api, name, 60)
    mark_control_plane(api, name)
    token, _ = create_token(api, 24 * 3600)
    out(f"[bootstrap-token] Using token: {token[:7]}<value withheld>")
    out('[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace')
    api.apply("/api/v1/namespaces/kube-public/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "", "cluster": {"certificate-authority-data": b64(read(PKI + "/ca.crt")),
                                                   "server": server}}],
            "contexts": None, "current-context": "", "preferences": {}, "users": None}, sort_keys=False)}})
    api.apply("/api/v1/namespaces/kube-system/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                                                              "labels": {"app": "kube-proxy"}},
        "data": {"config.conf": yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "bindAddress": "0.0.0.0", "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
            "clusterCIDR": (cc.get("networking") or {}).get("podSubnet", ""), "mode": ""}, sort_keys=False),
            "kubeconfig.conf": yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"cluster": {"certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                                          "server": server}, "name": "default"}],
                "contexts": [{"context": {"cluster": "default", "namespace": "default", "user": "default"},
                              "name": "default"}],
                "current-context": "default",
                "users": [{"name": "default", "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}]},
                sort_keys=False)}})
    out("[addons] Applied essential addon: kube-proxy (stand-in: its ConfigMap only)")
    out("")
    out("Your Kubernetes control-plane has initialized successfully!")


def join_endpoint(api, admin):
    try:
        cc = cluster_config(api)
    except Fail:
        cc = {}
    if cc.get("controlPlaneEndpoint"):
        return cc["controlPlaneEndpoint"]
    h, p = split_hostport(admin.server)
    return f"{h}:{p}"


def kubeadm_token(pos, fl):
    if not pos or pos[0] != "create":
        raise Fail("the stand-in supports `kubeadm token create` only")
    admin = Kubeconfig(fl.get("kubeconfig", K + "/admin.conf"))
    api = admin.api()
    ttl = parse_duration(fl.get("ttl", "24h"))
    token, _ = create_token(api, ttl)
    if "print-join-command" not in fl:
        out(token)
        return
    line = f"kubeadm join {join_endpoint(api, admin)} --token {token} --discovery-token-ca-cert-hash {ca_hash(read(PKI + '/ca.crt'))} "
    if fl.get("certificate-key"):
        parse_cert_key(fl["certificate-key"])
        line += f"--control-plane --certificate-key {fl['certificate-key']}"
    out(line)


def join_config(fl):
    """The flags a `kubeadm join --config F` stands for, from F's
    JoinConfiguration (kubeadm.k8s.io/v1beta3 or v1beta4): discovery's
    bootstrap token, its API server endpoint and CA hashes, the control
    plane's certificate key and advertise address, the node's name."""
    local, _ = load_config(fl["config"])
    if local.get("kind") != "JoinConfiguration":
        raise Fail(f"--config {fl['config']}: no JoinConfiguration in it")
    disc = local.get("discovery") or {}
    bt = disc.get("bootstrapToken") or {}
    if not bt and not disc.get("file"):
        raise Fail("discovery: Invalid value: \"\": bootstrapToken or file must be set")
    res = {}
    if bt.get("apiServerEndpoint"):
        res["endpoint"] = bt["apiServerEndpoint"]
    token = bt.get("token") or disc.get("tlsBootstrapToken")
    if token:
        res["token"] = token
    hashes = bt.get("caCertHashes") or []
    if hashes:
        res["discovery-token-ca-cert-hash"] = ",".join(hashes)
    if bt.get("unsafeSkipCAVerification"):
        res["discovery-token-unsafe-skip-ca-verification"] = "true"
    cp = local.get("controlPlane")
    if cp is not None:
        res["control-plane"] = "true"
        if cp.get("certificateKey"):
            res["certificate-key"] = cp["certificateKey"]
        adv = (cp.get("localAPIEndpoint") or {}).get("advertiseAddress")
        if adv:
            res["apiserver-advertise-address"] = adv
    name = (local.get("nodeRegistration") or {}).get("name")
    if name:
        res["node-name"] = name
    for k in ("ignore-preflight-errors", "node-name"):
        if k in fl:
            res[k] = fl[k]
    return res


def kubeadm_join(pos, fl):
    if "config" in fl:
        fl = join_config(fl)
        pos = [fl["endpoint"]] if "endpoint" in fl else []
    if not pos:
        raise Fail("join: the API server endpoint (HOST:PORT) is required")
    ep = pos[0]
    token = fl.get("token") or fl.get("discovery-token")
    if not token or "." not in token:
        raise Fail("join: --token is required")
    want_hash = fl.get("discovery-token-ca-cert-hash")
    cp = "control-plane" in fl
    v = versions()
    name = fl.get("node-name") or hostname()
    advertise = fl.get("apiserver-advertise-address") or node_ip()
    out("[preflight] Running pre-flight checks")
    errs = []
    if os.path.exists(K + "/kubelet.conf"):
        errs.append(f"[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: {K}/kubelet.conf already exists")
    if cp and os.path.isdir(ETCD_DIR) and os.listdir(ETCD_DIR):
        errs.append(f"[ERROR DirAvailable--var-lib-etcd]: {ETCD_DIR} is not empty")
    if cp and os.path.isdir(MANIFESTS) and os.listdir(MANIFESTS):
        errs.append(f"[ERROR DirAvailable--etc-kubernetes-manifests]: {MANIFESTS} is not empty")
    ignore = [x.strip().lower() for x in fl.get("ignore-preflight-errors", "").split(",") if x.strip()]
    errs = [x for x in errs if "all" not in ignore and not any(f"[error {i}]" in x.lower() for i in ignore)]
    if errs:
        raise Fail("[preflight] Some fatal errors occurred:\n\t" + "\n\t".join(errs)
                   + "\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`")
    # Discovery: cluster-info, pinned by the CA's public key hash.
    host, port = split_hostport(ep)
    anon = Api(f"{host}:{port}", b"", insecure=True)
    ci = anon.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    if not ci:
        raise Fail(f"couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap from https://{host}:{port}")
    kc = yaml.safe_load(ci["data"]["kubeconfig"])
    ca_pem = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    got = ca_hash(ca_pem)
    if not want_hash and "discovery-token-unsafe-skip-ca-verification" not in fl:
        raise Fail("discovery: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue")
    if want_hash and got not in want_hash.split(","):
        raise Fail(f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "{got}" are pinned')
    api = Api(f"{host}:{port}", ca_pem, token=token)
    tid, tsec = token.split(".", 1)
    sec = token_secret(api, tid)
    if (not sec or base64.b64decode(sec["data"].get("token-secret", "")).decode() != tsec
            or token_expired(sec)):
        raise Fail(f'couldn\'t validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID "{tid}"')
    out(f"[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...")
    cc = cluster_config(api)
    k8s = cc.get("kubernetesVersion") or v["kubeadm"]
    os.makedirs(PKI, exist_ok=True)
    write_file(PKI + "/ca.crt", ca_pem)
    server = f"https://{cc['controlPlaneEndpoint']}" if cc.get("controlPlaneEndpoint") else f"https://{host}:{port}"
    if cp:
        if not cc.get("controlPlaneEndpoint"):
            raise Fail("unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.")
        if not fl.get("certificate-key"):
            raise Fail("join --control-plane: --certificate-key is required by this stand-in (it downloads the certificates)")
        out("[preflight] Running pre-flight checks before initializing the new control plane instance")
        download_certs(api, fl["certificate-key"])
        node_certs(cc, name, advertise, init=False)
        out(f'[kubeconfig] Generating kubeconfig files')
        out(f'[kubeconfig] Using kubeconfig folder "{K}"')
        write_kubeconfig("admin.conf", server, "kubernetes-admin", ["kubeadm:cluster-admins"])
        write_kubeconfig("controller-manager.conf", f"https://{advertise}:6443", "system:kube-controller-manager", [])
        write_kubeconfig("scheduler.conf", f"https://{advertise}:6443", "system:kube-scheduler", [])
        out(f'[control-plane] Using manifest folder "{MANIFESTS}"')
        control_plane_manifests(cc, advertise, k8s)
        out("[check-etcd] Checking that the etcd cluster is healthy")
        endpoints = etcd_endpoints(api)
        members = member_list(endpoints)
    out("[kubelet-start] Writing kubelet configuration to file")
    if cp:
        write_kubelet_conf(server, name)
    else:
        write_file(K + "/kubelet.conf", kubeconfig_text(server, "default-auth", token=token, cluster="default-cluster"), 0o600)
    start_kubelet()
    out("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    wait_node(api, name, 60)
    if not cp:
        out("")
        out("This node has joined the cluster:")
        out("* Certificate signing request was sent to apiserver and a response was received.")
        out("* The Kubelet was informed of the new secure connection details.")
        return
    peer = f"https://{advertise}:2380"
    mine = next((m for m in members if peer in (m.get("peerURLs") or [])), None)
    if mine is None:
        until = time.time() + 60
        while True:
            p = etcdctl(endpoints, "member", "add", name, "--learner", f"--peer-urls={peer}", check=False)
            if p.returncode == 0:
                break
            if time.time() > until or "unhealthy cluster" not in p.stderr:
                raise Fail(f"etcdctl member add: {p.stderr.strip()}")
            time.sleep(1)
        initial = next((l.split("=", 1)[1].strip('"') for l in p.stdout.splitlines()
                        if l.startswith("ETCD_INITIAL_CLUSTER=")), None)
        if not initial:
            raise Fail(f"etcdctl member add: no ETCD_INITIAL_CLUSTER in its output: {p.stdout.strip()}")
        members = member_list(endpoints)
        mine = next(m for m in members if peer in (m.get("peerURLs") or []))
    else:
        initial = ",".join(f"{m.get('name') or name}={m['peerURLs'][0]}" for m in members)
    out("[etcd] Announced new etcd member joining to the existing etcd cluster")
    etcd_manifest(name, advertise, initial, "existing")
    out("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s")
    delay = lab().get("promote_delay_ms", 0) / 1000
    if delay:
        time.sleep(delay)
    mid = "%x" % mine["ID"]
    until = time.time() + 120
    while True:
        try:
            p = etcdctl(endpoints, "member", "promote", mid, timeout=5, check=False)
        except subprocess.TimeoutExpired:
            p = subprocess.CompletedProcess([], 1, "", "etcdctl member promote timed out")
        if p.returncode == 0 or "is not a learner" in (p.stderr or ""):
            break
        if time.time() > until:
            raise Fail(f"error creating local etcd static pod manifest file: etcd learner {name} ({mid}) was not promoted within 2m0s: {p.stderr.strip()}")
        time.sleep(0.5)
    out(f"[etcd] The learner member {mid} was promoted to a voting member")
    mark_control_plane(api, name)
    out("")
    out("This node has joined the cluster and a new control plane instance was created:")
    out("")
    out("* Certificate signing request was sent to apiserver and approval was received.")
    out("* The Kubelet was informed of the new secure connection details.")
    out("* Control plane label and taint were applied to the new node.")
    out("* The Kubernetes control plane instances scaled up.")
    out("* A new etcd member was added to the local/stacked etcd cluster.")


def kubeadm_reset(fl):
    if "f" not in fl and "force" not in fl:
        raise Fail("reset: the stand-in needs -f (it does not ask)")
    out("[preflight] Running pre-flight checks")
    advertise = node_ip()
    if os.path.exists(MANIFESTS + "/etcd.yaml") and os.path.exists(PKI + "/apiserver-etcd-client.crt"):
        peer = f"https://{advertise}:2380"
        try:
            eps = [f"https://{advertise}:2379"]
            try:
                eps = etcd_endpoints(admin_api(fl))
            except Fail:
                pass
            members = member_list(eps)
            mine = next((m for m in members if peer in (m.get("peerURLs") or [])), None)
            if mine is None:
                out("[reset] No etcd member of this node in the etcd cluster")
            elif len(members) == 1:
                out("[reset] This is the only etcd member: it is not removed")
            else:
                # As kubeadm: retried while etcd refuses ("unhealthy
                # cluster": a member not connected long enough yet).
                others = [e for e in eps if advertise not in e] or eps
                until = time.time() + 60
                while True:
                    p = etcdctl(others, "member", "remove", "%x" % mine["ID"], check=False)
                    if p.returncode == 0 or "not found" in p.stderr:
                        break
                    if time.time() > until:
                        raise Fail(f"etcdctl member remove: {p.stderr.strip()}")
                    time.sleep(1)
                out(f"[reset] Removed the etcd member {mine.get('name')} ({'%x' % mine['ID']}) of this node")
        except (Fail, subprocess.TimeoutExpired) as e:
            out(f"[reset] WARNING: failed to remove etcd member: {e}; please manually remove this etcd member using etcdctl")
    out("[reset] Stopping the kubelet service")
    unit_stop("kubelet")
    out(f'[reset] Unmounting mounted directories in "{KUBELET_DIR}"')
    for f in os.listdir(PODS) if os.path.isdir(PODS) else []:
        stop_pod(f[:-5]) if f.endswith(".json") else None
    dirs = [MANIFESTS, KUBELET_DIR, PKI, ETCD_DIR]
    out(f"[reset] Deleting contents of directories: [{' '.join(dirs)}]")
    for d in dirs:
        if os.path.isdir(d):
            for e in os.listdir(d):
                p = os.path.join(d, e)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
    files = [f"{K}/{n}" for n in ("admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf",
                                  "controller-manager.conf", "scheduler.conf")]
    out(f"[reset] Deleting files: [{' '.join(files)}]")
    for f in files:
        if os.path.exists(f):
            os.unlink(f)
    out("")
    out("The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d")
    out("")
    out("The reset process does not reset or clean up iptables rules or IPVS tables.")


def kubeadm(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        out("kubeadm (hacli testlab stand-in): init, init phase, token create, join, reset, version")
        return 0
    cmd, rest = argv[0], argv[1:]
    pos, fl = flags(rest, BOOL_FLAGS)
    v = versions()
    if "config" in fl:
        # As kubeadm's ValidateMixedArguments: with --config, only these
        # flags (and any --skip-*) may be given too.
        mixed = sorted(f for f in fl if f not in CONFIG_MIX_OK and not f.startswith("skip-"))
        if mixed:
            raise Fail(f"can not mix '--config' with arguments [{' '.join(mixed)}]")
    if cmd == "certs":
        if pos == ["certificate-key"]:
            out(secrets.token_hex(32))
            return 0
        raise Fail(f"the stand-in does not implement `kubeadm certs {' '.join(pos)}`")
    if cmd == "version":
        if fl.get("o") == "short" or fl.get("output") == "short":
            out(v["kubeadm"])
        else:
            ver = v["kubeadm"].lstrip("v").split(".")
            out(f'kubeadm version: &version.Info{{Major:"{ver[0]}", Minor:"{ver[1]}", GitVersion:"{v["kubeadm"]}", '
                f'GitCommit:"hacli-testlab", GitTreeState:"clean", BuildDate:"2026-01-01T00:00:00Z", '
                f'GoVersion:"go1.23.0", Compiler:"gc", Platform:"linux/amd64"}}')
        return 0
    if cmd == "init":
        if pos and pos[0] == "phase":
            phase = pos[1:]
            if phase == ["upload-config", "kubeadm"] or phase == ["upload-config", "all"]:
                _, cc = load_config(fl["config"]) if "config" in fl else ({}, None)
                api = admin_api(fl)
                if cc is None:
                    cc = cluster_config(api)
                upload_config(api, cc, v["kubeadm"])
                return 0
            if phase == ["certs", "apiserver"]:
                local, cc = load_config(fl["config"]) if "config" in fl else ({}, {})
                name = ((local.get("nodeRegistration") or {}).get("name")) or hostname()
                adv = fl.get("apiserver-advertise-address") or ((local.get("localAPIEndpoint") or {}).get("advertiseAddress")) or node_ip()
                if not os.path.exists(PKI + "/ca.key"):
                    raise Fail(f"couldn't load CA certificate ca: open {PKI}/ca.key: no such file or directory")
                certs_apiserver(cc, name, adv)
                return 0
            if phase == ["upload-certs"]:
                if "upload-certs" not in fl:
                    out("[upload-certs] Skipping phase. Please see --upload-certs")
                    return 0
                local, _ = load_config(fl["config"]) if "config" in fl else ({}, {})
                if "config" in fl and local.get("kind") != "InitConfiguration":
                    raise Fail(f"--config {fl['config']}: no InitConfiguration in it")
                key = fl.get("certificate-key") or local.get("certificateKey") or secrets.token_hex(32)
                record_issued("certificate-key", key)
                upload_certs(admin_api(fl), key)
                if "skip-certificate-key-print" not in fl:
                    out("[upload-certs] Using certificate key:")
                    out(key)
                return 0
            raise Fail(f"the stand-in does not implement `kubeadm init phase {' '.join(phase)}`")
        kubeadm_init(fl)
        return 0
    if cmd == "token":
        kubeadm_token(pos, fl)
        return 0
    if cmd == "join":
        kubeadm_join(pos, fl)
        return 0
    if cmd == "reset":
        kubeadm_reset(fl)
        return 0
    if cmd == "upgrade":
        return kubeadm_upgrade(pos, fl)
    raise Fail(f'unknown command "{cmd}" for "kubeadm" (hacli testlab stand-in)')


# ---------------------------------------------------------------- upgrade

UPGRADE_FAILS = LAB + "/upgrade-fails"


def parse_version(v):
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", v or "")
    if not m:
        raise Fail(f'the version "{v}" is not a valid semantic version (want vX.Y.Z)')
    return tuple(int(x) for x in m.groups())


def set_kubeadm_version(ver):
    v = versions()
    v["kubeadm"] = ver
    write_file(LAB + "/versions.json", json.dumps(v))


def injected_failure():
    if os.path.exists(UPGRADE_FAILS):
        msg = open(UPGRADE_FAILS).read().strip() or "the upgrade failed (injected by the lab)"
        raise Fail(f"[upgrade/apply] FATAL: {msg}")


UPGRADE_STALLS = LAB + "/upgrade-stalls"


def stalled_component():
    """The lab's injected stall: `COMPONENT [SECONDS]` in UPGRADE_STALLS
    (the new static pod of COMPONENT never comes up; kubeadm waits 5 min,
    the lab SECONDS, 3 by default)."""
    if not os.path.exists(UPGRADE_STALLS):
        return None
    words = open(UPGRADE_STALLS).read().split()
    if not words:
        return None
    return words[0], float(words[1]) if len(words) > 1 else 3.0


def roll_back_stalled(name, seconds, moved):
    """What kubeadm does when a new static pod does not come up within its
    wait: every manifest it moved in this run is put back from its backup,
    the kubelet runs the old pods again, and the upgrade fails."""
    time.sleep(seconds)
    out(f"[upgrade/staticpods] Static Pod hash for component {name} on Node {hostname()} did not change after {seconds:g}s: timed out waiting for the condition")
    for n, path, old in reversed(moved):
        write_file(path, old, 0o600)
    for n, path, old in moved:
        h = hashlib.sha256(old).hexdigest()
        until = time.time() + 120
        while True:
            st = pod_state(n)
            if st and st.get("hash") == h and pid_alive(st["pid"]):
                break
            if time.time() > until:
                break
            time.sleep(0.1)
    wait_api(node_ip(), 6443, 120)
    raise Fail("[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has tried to recover everything "
               "into the earlier state. Errors faced: timed out waiting for the condition")


def upgrade_manifests(ver, cc):
    """Regenerate this node's control-plane manifests from the
    ClusterConfiguration `cc` with image tag `ver`, as kubeadm does (a
    flag or mount added by hand and not in kubeadm-config is gone), one at
    a time, the old one backed up under /etc/kubernetes/tmp, each time
    waiting for the kubelet to run the new pod."""
    advertise = node_ip()
    ann_key = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
    if os.path.exists(f"{MANIFESTS}/kube-apiserver.yaml"):
        cur = yaml.safe_load(read(f"{MANIFESTS}/kube-apiserver.yaml")) or {}
        ep = ((cur.get("metadata") or {}).get("annotations") or {}).get(ann_key)
        if ep:
            advertise = ep.rsplit(":", 1)[0]
    pods = control_plane_pods(cc, advertise)
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
    backup = f"{K}/tmp/kubeadm-backup-manifests-{stamp}"
    stall = stalled_component()
    moved = []
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        path = f"{MANIFESTS}/{name}.yaml"
        if not os.path.exists(path):
            continue
        cmd, ann, vols = pods[name]
        ann = dict(ann)
        ann["kubernetes.io/config.hash"] = secrets.token_hex(16)
        raw = manifest(name, cmd, ann, f"registry.k8s.io/{name}:{ver}", vols).encode()
        out(f'[upgrade/staticpods] Moving new manifest to "{path}" and backing up old manifest to '
            f'"{backup}/{name}.yaml"')
        os.makedirs(backup, mode=0o700, exist_ok=True)
        old = read(path)
        write_file(f"{backup}/{name}.yaml", old, 0o600)
        write_file(path, raw, 0o600)
        moved.append((name, path, old))
        h = hashlib.sha256(raw).hexdigest()
        out("[upgrade/staticpods] Waiting for the kubelet to restart the component")
        if stall and stall[0] == name:
            roll_back_stalled(name, stall[1], moved)
        until = time.time() + 120
        while True:
            st = pod_state(name)
            if st and st.get("hash") == h and pid_alive(st["pid"]):
                break
            if time.time() > until:
                raise Fail(f'[upgrade/staticpods] couldn\'t upgrade control plane: static Pod hash for component '
                           f'{name} on Node {hostname()} did not change after 2m0s (is the kubelet running?)')
            time.sleep(0.1)
        if name == "kube-apiserver":
            wait_api(node_ip(), 6443, 120)
        out(f'[upgrade/staticpods] Component "{name}" upgraded successfully!')


def kubeadm_upgrade(pos, fl):
    sub = pos[0] if pos else ""
    if sub == "node" and "kubeconfig" not in fl and not os.path.exists(K + "/admin.conf"):
        # A worker has no admin.conf: `kubeadm upgrade node` reads the
        # cluster with the kubelet's credentials there.
        fl = dict(fl, kubeconfig=K + "/kubelet.conf")
    api = admin_api(fl)
    if sub not in ("plan", "apply", "node"):
        raise Fail(f'unknown command "{sub}" for "kubeadm upgrade" (plan, apply, node)')
    out('[upgrade] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...')
    cc = cluster_config(api)
    cur = cc.get("kubernetesVersion") or versions()["kubeadm"]
    if sub == "plan":
        kv = versions()["kubeadm"]
        out("[preflight] Running pre-flight checks.")
        out("[upgrade] Running cluster health checks")
        out("[upgrade] Fetching available versions to upgrade to")
        out(f"[upgrade/versions] Cluster version: {cur}")
        out(f"[upgrade/versions] kubeadm version: {kv}")
        if parse_version(kv) > parse_version(cur):
            out("")
            out(f"Upgrade to the latest stable version:")
            out("")
            out("COMPONENT                 NODE      CURRENT   TARGET")
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                out(f"{c:<25} {hostname():<9} {cur:<9} {kv}")
            out("")
            out("You can now apply the upgrade by executing the following command:")
            out("")
            out(f"\tkubeadm upgrade apply {kv}")
        else:
            out("[upgrade/versions] Awesome, you're up-to-date! Enjoy!")
        return 0
    if sub == "apply":
        if len(pos) < 2:
            raise Fail("[upgrade/version] FATAL: missing version argument (kubeadm upgrade apply vX.Y.Z)")
        ver = pos[1] if pos[1].startswith("v") else "v" + pos[1]
        t, c = parse_version(ver), parse_version(cur)
        out("[upgrade/preflight] Running preflight checks")
        out("[upgrade] Running cluster health checks")
        out(f'[upgrade/version] You have chosen to change the cluster version to "{ver}"')
        out(f"[upgrade/versions] Cluster version: {cur}")
        out(f"[upgrade/versions] kubeadm version: {versions()['kubeadm']}")
        errs = []
        if t < c:
            errs.append(f'Specified version to upgrade to "{ver}" is equal to or lower than the cluster version '
                        f'"{cur}". Downgrades are not supported yet')
        elif t[0] != c[0] or t[1] > c[1] + 1:
            errs.append(f'Specified version to upgrade to "{ver}" is too high; kubeadm can upgrade only 1 minor '
                        f'version at a time')
        if errs and "force" not in fl:
            raise Fail("[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n\t- "
                       + "\n\t- ".join(errs) + "\n\nCan be bypassed if you pass the --force flag")
        if "y" not in fl and "yes" not in fl:
            sys.stdout.write("[upgrade] Are you sure you want to proceed? [y/N]: ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                raise Fail("won't proceed; the user didn't answer (Y|y) in order to continue")
        injected_failure()
        out(f'[upgrade/control-plane] Upgrading your static Pod-hosted control plane to version "{ver}" (timeout: 5m0s)...')
        upgrade_manifests(ver, cc)
        cc = dict(cc)
        cc["kubernetesVersion"] = ver
        upload_config(api, cc, ver)
        set_kubeadm_version(ver)
        out(f"[upgrade/kubelet] Writing kubelet configuration to file \"{KUBELET_DIR}/config.yaml\"")
        out(f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{ver}". Enjoy!')
        out("")
        out("[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets if you haven't already done so.")
        return 0
    # node
    ver = cur
    out("[upgrade/preflight] Running pre-flight checks")
    injected_failure()
    if os.path.exists(f"{MANIFESTS}/kube-apiserver.yaml"):
        out(f'[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version "{ver}"...')
        upgrade_manifests(ver, cc)
        set_kubeadm_version(ver)
        out("[upgrade] The control plane instance for this node was successfully upgraded!")
    else:
        out("[upgrade] Skipping phase. Not a control plane node.")
        set_kubeadm_version(ver)
    out(f"[upgrade/kubelet] Writing kubelet configuration to file \"{KUBELET_DIR}/config.yaml\"")
    out("[upgrade] The configuration for this node was successfully upgraded!")
    out("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
    return 0


# ---------------------------------------------------------------- power

POWER_REQUEST = LAB + "/power-request"


def power_request(what):
    """Ask the lab (root side) to power-cycle (`reboot`) or power off this
    host: it polls this file; nothing in the host can do it itself."""
    write_file(POWER_REQUEST, json.dumps({"action": what, "t": time.time()}))
    return 0


def shutdown(prog, argv):
    if prog == "reboot" or (prog == "shutdown" and ("-r" in argv or "--reboot" in argv)):
        return power_request("reboot")
    if prog in ("poweroff", "halt") or prog == "shutdown":
        return power_request("poweroff")
    raise Fail(f"{prog}: unsupported")


# ---------------------------------------------------------------- systemctl

UNIT_EXEC = {"kubelet": ["/usr/local/bin/kubelet"], "containerd": ["/usr/local/bin/containerd"]}


def unit_name(u):
    return u[:-8] if u.endswith(".service") else u


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def unit_pid(u):
    try:
        pid = int(read(f"{UNITS}/{u}.pid"))
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn_daemon(argv, log):
    os.makedirs(LOGS, exist_ok=True)
    f = open(log, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True, close_fds=True)
    f.close()
    return p.pid


def unit_start(u):
    if unit_pid(u):
        return
    os.makedirs(UNITS, exist_ok=True)
    pid = spawn_daemon(UNIT_EXEC[u], f"{LOGS}/{u}.log")
    write_file(f"{UNITS}/{u}.pid", str(pid))


def kill_wait(pid, secs=5):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    until = time.time() + secs
    while pid_alive(pid) and time.time() < until:
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while pid_alive(pid):
            time.sleep(0.02)


def unit_stop(u):
    pid = unit_pid(u)
    if pid:
        kill_wait(pid)
    try:
        os.unlink(f"{UNITS}/{u}.pid")
    except OSError:
        pass


def unit_restart(u):
    unit_stop(u)
    unit_start(u)


def systemctl(argv):
    pos = [a for a in argv if not a.startswith("-")]
    if not pos:
        raise Fail("systemctl (stand-in): a command is needed")
    cmd, units = pos[0], [unit_name(u) for u in pos[1:]]
    if cmd in ("daemon-reload", "reset-failed"):
        return 0
    if cmd in ("reboot", "poweroff", "halt"):
        return power_request("reboot" if cmd == "reboot" else "poweroff")
    for u in units:
        if u not in UNIT_EXEC:
            print(f"Unit {u}.service could not be found.", file=sys.stderr)
            return 5 if cmd != "is-active" else 4
    if cmd == "is-active":
        rc = 0
        for u in units:
            a = unit_pid(u) is not None
            if "--quiet" not in argv and "-q" not in argv:
                out("active" if a else "inactive")
            rc = rc or (0 if a else 3)
        return rc
    if cmd == "is-enabled":
        for u in units:
            out("enabled" if os.path.exists(f"{LAB}/enabled/{u}") else "disabled")
        return 0
    if cmd in ("enable", "disable"):
        for u in units:
            os.makedirs(f"{LAB}/enabled", exist_ok=True)
            if cmd == "enable":
                write_file(f"{LAB}/enabled/{u}", "")
            elif os.path.exists(f"{LAB}/enabled/{u}"):
                os.unlink(f"{LAB}/enabled/{u}")
        if "--now" in argv:
            for u in units:
                (unit_start if cmd == "enable" else unit_stop)(u)
        return 0
    fn = {"start": unit_start, "stop": unit_stop, "restart": unit_restart}.get(cmd)
    if fn:
        for u in units:
            fn(u)
        return 0
    if cmd == "status":
        rc = 0
        for u in units:
            pid = unit_pid(u)
            out(f"* {u}.service - {u} (hacli testlab stand-in)")
            out(f"     Active: {'active (running)' if pid else 'inactive (dead)'}")
            if pid:
                out(f"   Main PID: {pid} ({u})")
            rc = rc or (0 if pid else 3)
        return rc
    raise Fail(f"systemctl (stand-in): unsupported command {cmd}")


# ---------------------------------------------------------------- boot

def boot():
    """At power on: start the enabled units, run cloud-init's runcmd once."""
    os.makedirs(RUN, exist_ok=True)
    d = f"{LAB}/enabled"
    for u in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if u in UNIT_EXEC:
            unit_start(u)
    ci = f"{LAB}/cloud-init-runcmd.sh"
    done = "/var/lib/cloud/instance/boot-finished"
    if os.path.exists(ci) and not os.path.exists(done):
        os.makedirs(os.path.dirname(done), exist_ok=True)
        spawn_daemon(["/bin/sh", "-c", f"/bin/sh {ci} && date > {done}"], f"{LOGS}/cloud-init-output.log")
    return 0


# ---------------------------------------------------------------- kubelet

# Every file of the manifests directory the kubelet took for a static pod,
# once per name (as the real kubelet, every regular file whose name does not
# begin with a dot, whatever its extension: a temporary file written there
# is a pod too).
STATIC_POD_FILES = LOGS + "/static-pod-files.log"
_seen_files = set()
_seen_lock = threading.Lock()


def saw_static_pod_file(f):
    with _seen_lock:
        if f in _seen_files:
            return
        _seen_files.add(f)
        try:
            os.makedirs(LOGS, exist_ok=True)
            with open(STATIC_POD_FILES, "a") as fh:
                fh.write(f + "\n")
        except OSError as e:
            print(f"kubelet: {STATIC_POD_FILES}: {e}", file=sys.stderr, flush=True)


def watch_manifests():
    """The real kubelet watches its static pod path with inotify and reads
    every file that appears there at once: so does this thread, so that a
    file that is there only for a moment (a temporary file renamed away) is
    seen, and recorded, as the real kubelet would see it."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        print(f"kubelet: inotify_init1: errno {ctypes.get_errno()}", file=sys.stderr, flush=True)
        return
    # IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
    mask = 0x8 | 0x80 | 0x100
    wd = -1
    while True:
        if wd < 0:
            if not os.path.isdir(MANIFESTS):
                time.sleep(0.2)
                continue
            wd = libc.inotify_add_watch(fd, MANIFESTS.encode(), mask)
            if wd < 0:
                time.sleep(0.2)
                continue
            for f in os.listdir(MANIFESTS):
                if not f.startswith("."):
                    saw_static_pod_file(f)
        buf = os.read(fd, 65536)
        i = 0
        while i + 16 <= len(buf):
            _, m, _, n = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode(errors="replace")
            i += 16 + n
            if m & 0x8000:  # IN_IGNORED: the directory went; watch it again
                wd = -1
            elif name and not name.startswith("."):
                saw_static_pod_file(name)


def manifest_docs():
    res = {}
    if not os.path.isdir(MANIFESTS):
        return res
    for f in sorted(os.listdir(MANIFESTS)):
        if f.startswith(".") or not os.path.isfile(f"{MANIFESTS}/{f}"):
            continue
        saw_static_pod_file(f)
        try:
            raw = read(f"{MANIFESTS}/{f}")
            pod = yaml.safe_load(raw)
            c = pod["spec"]["containers"][0]
            argv = list(c.get("command") or []) + list(c.get("args") or [])
            res[pod["metadata"]["name"]] = (pod, argv, hashlib.sha256(raw).hexdigest())
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
            print(f"kubelet: {MANIFESTS}/{f}: {e}", file=sys.stderr, flush=True)
    return res


def pod_state(name):
    try:
        return json.loads(read(f"{PODS}/{name}.json"))
    except (OSError, ValueError):
        return None


def stop_pod(name):
    st = pod_state(name)
    if st and pid_alive(st["pid"]):
        kill_wait(st["pid"])
    try:
        os.unlink(f"{PODS}/{name}.json")
    except OSError:
        pass


def start_pod(name, argv, h, restarts):
    os.makedirs(PODS, exist_ok=True)
    exe = argv[0]
    if not exe.startswith("/"):
        for d in ("/usr/local/bin", "/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{exe}"):
                exe = f"{d}/{exe}"
                break
    try:
        pid = spawn_daemon([exe] + argv[1:], f"{LOGS}/pod-{name}.log")
    except OSError as e:
        print(f"kubelet: static pod {name}: {e}", file=sys.stderr, flush=True)
        return
    print(f"{rfc3339(now())} kubelet: started static pod {name} (pid {pid}, restarts {restarts})",
          file=sys.stderr, flush=True)
    write_file(f"{PODS}/{name}.json", json.dumps({"pid": pid, "hash": h, "restarts": restarts, "t": time.time(),
                                                   "started": rfc3339(now())}))


def sync_pods():
    docs = manifest_docs()
    existing = [f[:-5] for f in os.listdir(PODS) if f.endswith(".json")] if os.path.isdir(PODS) else []
    for name in existing:
        if name not in docs:
            stop_pod(name)
    for name, (pod, argv, h) in docs.items():
        st = pod_state(name)
        if st and st["hash"] != h:
            stop_pod(name)
            st = None
        if not st:
            start_pod(name, argv, h, 0)
        elif not pid_alive(st["pid"]) and time.time() - st.get("t", 0) >= 1.0:
            # A crash: started again, at most once a second.
            start_pod(name, argv, h, st.get("restarts", 0) + 1)
    return docs


def kubelet_main():
    os.makedirs(RUN, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    name = hostname()
    started = time.time()
    v = versions()
    print(f"kubelet (hacli testlab stand-in) {v['kubelet']} starting on {name}", file=sys.stderr, flush=True)
    last_beat = 0
    mirrors = set()
    api = None
    threading.Thread(target=watch_manifests, daemon=True).start()
    while True:
        docs = sync_pods()
        if time.time() - last_beat >= 1.0 and os.path.exists(K + "/kubelet.conf"):
            last_beat = time.time()
            try:
                # Read once, as the real kubelet: a changed server needs a
                # kubelet restart.
                if api is None:
                    kc = Kubeconfig(K + "/kubelet.conf")
                    print(f"kubelet: using {kc.server} from {K}/kubelet.conf", file=sys.stderr, flush=True)
                    api = kc.api()
                # NotReady for a moment after a (re)start, as a real kubelet
                # whose runtime and network checks have not passed yet.
                ready = time.time() - started > 2.0
                heartbeat(api, name, ready, v)
                mirrors = sync_mirrors(api, name, docs, mirrors)
            except (Fail, OSError, http.client.HTTPException, ssl.SSLError, ValueError) as e:
                print(f"kubelet: heartbeat: {e}", file=sys.stderr, flush=True)
        time.sleep(0.25)


def boot_id():
    try:
        return open("/proc/sys/kernel/random/boot_id").read().strip()
    except OSError:
        return ""


def heartbeat(api, name, ready, v):
    t = rfc3339(now())
    cond = {"type": "Ready", "status": "True" if ready else "False", "lastHeartbeatTime": t,
            "lastTransitionTime": t,
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "container runtime status check may not have completed yet"}
    node = api.get(f"/api/v1/nodes/{name}")
    status = {"conditions": [cond],
              "addresses": [{"type": "InternalIP", "address": node_ip()}, {"type": "Hostname", "address": name}],
              "nodeInfo": {"kubeletVersion": v["kubelet"], "containerRuntimeVersion": f"containerd://{v['containerd']}",
                           "kubeProxyVersion": v["kubelet"], "operatingSystem": "linux", "architecture": "amd64",
                           "osImage": "Debian GNU/Linux (hacli testlab)", "kernelVersion": os.uname().release,
                           "machineID": "", "systemUUID": "", "bootID": boot_id()}}
    if node is None:
        api.must("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                                                  "beta.kubernetes.io/arch": "amd64"}},
            "spec": {}, "status": status})
        return
    old = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}.get("Ready")
    if old and old.get("status") == cond["status"]:
        cond["lastTransitionTime"] = old.get("lastTransitionTime", t)
    api.patch(f"/api/v1/nodes/{name}", {"status": status})


def sync_mirrors(api, name, docs, known):
    now_names = set()
    for pname, (pod, argv, h) in docs.items():
        st = pod_state(pname)
        running = bool(st and pid_alive(st["pid"]))
        mname = f"{pname}-{name}"
        now_names.add(mname)
        meta = dict(pod["metadata"])
        meta["name"] = mname
        meta["namespace"] = "kube-system"
        ann = dict(meta.get("annotations") or {})
        ann["kubernetes.io/config.mirror"] = h[:32]
        ann["kubernetes.io/config.source"] = "file"
        meta["annotations"] = ann
        spec = dict(pod["spec"])
        spec["nodeName"] = name
        t = rfc3339(now())
        c = pod["spec"]["containers"][0]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {
            "phase": "Running" if running else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": running,
                                   "started": running, "restartCount": (st or {}).get("restarts", 0),
                                   "state": {"running": {"startedAt": (st or {}).get("started", t)}} if running
                                   else {"waiting": {"reason": "CrashLoopBackOff"}}}],
            "hostIP": node_ip(), "podIP": node_ip(), "startTime": (st or {}).get("started", t)}}
        cur = api.get(f"/api/v1/namespaces/kube-system/pods/{mname}")
        if cur is None:
            st_, v_ = api.call("POST", "/api/v1/namespaces/kube-system/pods", body)
            if st_ not in (200, 201):
                print(f"{rfc3339(now())} kubelet: mirror pod {mname}: {st_}: {v_}", file=sys.stderr, flush=True)
        else:
            same = (cur.get("status", {}).get("phase") == body["status"]["phase"]
                    and (cur["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror") == h[:32]
                    and (cur.get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount")
                    == body["status"]["containerStatuses"][0]["restartCount"])
            if not same:
                body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                st_, v_ = api.call("PUT", f"/api/v1/namespaces/kube-system/pods/{mname}", body)
                if st_ != 200:
                    print(f"{rfc3339(now())} kubelet: mirror pod {mname}: {st_}: {v_}", file=sys.stderr, flush=True)
    for gone in known - now_names:
        api.call("DELETE", f"/api/v1/namespaces/kube-system/pods/{gone}")
    return now_names


# ---------------------------------------------------------------- kube-apiserver

class ApiserverState:
    def __init__(self, fl):
        self.cert = fl.get("tls-cert-file", PKI + "/apiserver.crt")
        self.key = fl.get("tls-private-key-file", PKI + "/apiserver.key")
        self.client_ca = fl.get("client-ca-file")
        self.etcd = (fl.get("etcd-servers") or "https://127.0.0.1:2379").split(",")[0]
        self.etcd_tls = (fl.get("etcd-cafile"), fl.get("etcd-certfile"), fl.get("etcd-keyfile"))
        self.lock = threading.Lock()
        self.stamp = None
        self.ctx = None
        self.health = (0.0, False)
        cfg = lab()
        self.store = cfg["store"]
        self.store_token = cfg["store_token"]
        self.store_ctx = ssl.create_default_context(cafile=cfg["store_ca"])
        self.local = threading.local()
        self.reload_env = os.environ.get("TESTLAB_APISERVER_CERT_RELOAD", "1") != "0"
        self.load(force=True)

    def stat(self):
        s1, s2 = os.stat(self.cert), os.stat(self.key)
        return (s1.st_mtime_ns, s1.st_ino, s1.st_size, s2.st_mtime_ns, s2.st_ino, s2.st_size)

    def reload_enabled(self):
        return self.reload_env and not os.path.exists(LAB + "/apiserver-no-cert-reload")

    def load(self, force=False):
        """The serving context; re-read from disk when the pair changed (as
        the real apiserver's dynamic serving certificate), unless disabled."""
        with self.lock:
            if not force and not self.reload_enabled():
                return self.ctx
            try:
                st = self.stat()
            except OSError:
                return self.ctx
            if st == self.stamp and self.ctx:
                return self.ctx
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.set_alpn_protocols(["http/1.1"])
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, OSError) as e:
                # A half-written pair: keep serving the old one.
                print(f"kube-apiserver: loading {self.cert}: {e}; keeping the current certificate", file=sys.stderr, flush=True)
                return self.ctx
            if self.client_ca:
                ctx.load_verify_locations(self.client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            if self.ctx is not None:
                print(f"kube-apiserver: loaded a new serving certificate from {self.cert}", file=sys.stderr, flush=True)
            self.ctx, self.stamp = ctx, st
            return ctx

    def etcd_ok(self):
        with self.lock:
            t, ok = self.health
            if time.time() - t < 1.0:
                return ok
        ok = False
        try:
            ca, cert, key = self.etcd_tls
            ctx = ssl.create_default_context(cafile=ca)
            ctx.check_hostname = False
            if cert:
                ctx.load_cert_chain(cert, key)
            h, p = split_hostport(self.etcd)
            # As the real apiserver's etcd check: a read of the key
            # "health" (linearizable: a learner refuses it), here through
            # etcd's JSON gateway.
            c = http.client.HTTPSConnection(h, p, context=ctx, timeout=2)
            c.request("POST", "/v3/kv/range", body=json.dumps({"key": b64("health")}),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            ok = r.status == 200 and "header" in json.loads(body)
        except (OSError, ValueError, http.client.HTTPException, ssl.SSLError):
            ok = False
        with self.lock:
            if ok != self.health[1]:
                print(f"{rfc3339(now())} kube-apiserver: etcd at {self.etcd} {'healthy' if ok else 'unhealthy'}",
                      file=sys.stderr, flush=True)
            self.health = (time.time(), ok)
        return ok

    # ConfigMaps of the namespaces listed in ETCD_NAMESPACES are kept in the
    # real etcd, as a real apiserver keeps every object: under
    # /registry/configmaps/NS/NAME (JSON where the real one writes
    # protobuf), resourceVersion = the key's mod_revision. A write that etcd
    # does not commit (no quorum) fails as the real one's does.
    def etcd_namespaces(self):
        try:
            with open(ETCD_NAMESPACES) as f:
                return {l.strip() for l in f if l.strip()}
        except OSError:
            return set()

    def etcd_call(self, path, body, timeout=5):
        ca, cert, key = self.etcd_tls
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(cert, key)
        h, p = split_hostport(self.etcd)
        c = http.client.HTTPSConnection(h, p, context=ctx, timeout=timeout)
        try:
            c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = json.loads(r.read() or b"{}")
        finally:
            c.close()
        if r.status != 200:
            raise OSError(f"etcdserver: {data.get('message') or data.get('error') or r.status}")
        return data

    def store_conn(self, fresh=False):
        c = getattr(self.local, "conn", None)
        if c is None or fresh:
            h, p = split_hostport(self.store)
            c = http.client.HTTPSConnection(h, p, context=self.store_ctx, timeout=30)
            self.local.conn = c
        return c


FILE_FLAGS = ("tls-cert-file", "tls-private-key-file", "client-ca-file", "etcd-cafile", "etcd-certfile",
              "etcd-keyfile", "audit-policy-file", "encryption-provider-config", "oidc-ca-file",
              "service-account-key-file", "service-account-signing-key-file", "requestheader-client-ca-file",
              "proxy-client-cert-file", "proxy-client-key-file", "kubelet-client-certificate", "kubelet-client-key",
              "authentication-token-webhook-config-file", "authorization-webhook-config-file",
              "admission-control-config-file", "egress-selector-config-file", "tracing-config-file")


def apiserver_main(argv):
    _, fl = flags(argv, ())
    # As the real apiserver: a file a flag names must be there (it exits,
    # the kubelet restarts it: a crash loop).
    for f in FILE_FLAGS:
        if fl.get(f) and not os.path.exists(fl[f]):
            print(f"{rfc3339(now())} E kube-apiserver: --{f}: open {fl[f]}: no such file or directory",
                  file=sys.stderr, flush=True)
            return 1
    if fl.get("audit-log-path") and fl["audit-log-path"] != "-":
        d = os.path.dirname(fl["audit-log-path"])
        if d and not os.path.isdir(d):
            print(f"{rfc3339(now())} E kube-apiserver: --audit-log-path: mkdir {d}: the directory does not exist",
                  file=sys.stderr, flush=True)
            return 1
    state = ApiserverState(fl)
    port = int(fl.get("secure-port", "6443"))
    bind = fl.get("bind-address", "0.0.0.0")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kube-apiserver-testlab"

        def log_message(self, *a):
            pass

        def reply(self, code, body, ctype="text/plain; charset=utf-8"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def health(self, check_etcd):
            ok = state.etcd_ok() if check_etcd else True
            # The lab's switch for "a new apiserver that is not ready".
            if check_etcd and os.path.exists(LAB + "/apiserver-not-ready"):
                ok = False
            verbose = "verbose" in self.path
            if ok:
                self.reply(200, "[+]ping ok\n[+]etcd ok\nreadyz check passed\n" if verbose else "ok")
            else:
                self.reply(500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")

        def forward(self):
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/readyz", "/healthz"):
                return self.health(True)
            if path == "/livez":
                return self.health(False)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            parts = path.split("/")
            # /api/v1/namespaces/NS/configmaps[/NAME]
            if (len(parts) in (6, 7) and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "configmaps"
                    and parts[4] in state.etcd_namespaces()):
                return self.etcd_configmaps(parts[4], parts[6] if len(parts) == 7 else None, body)
            hdrs = {k: v for k, v in self.headers.items()
                    if k.lower() not in ("host", "authorization", "connection", "content-length", "accept-encoding",
                                         "transfer-encoding", "keep-alive")}
            hdrs["Authorization"] = "Bearer " + state.store_token
            for attempt in (0, 1):
                c = state.store_conn(fresh=attempt == 1)
                try:
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    break
                except (OSError, http.client.HTTPException) as e:
                    c.close()
                    if attempt == 1:
                        return self.reply(503, f"the API store is unreachable: {e}")
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def status(self, code, reason, message):
            self.reply(code, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                         "message": message, "reason": reason, "code": code}), "application/json")

        def etcd_configmaps(self, ns, name, body):
            prefix = f"/registry/configmaps/{ns}/"

            def obj(kv):
                o = json.loads(base64.b64decode(kv["value"]))
                o.setdefault("metadata", {})["resourceVersion"] = str(kv.get("mod_revision", "0"))
                return o
            try:
                if self.command == "GET" and name:
                    r = state.etcd_call("/v3/kv/range", {"key": b64(prefix + name)})
                    if not r.get("kvs"):
                        return self.status(404, "NotFound", f'configmaps "{name}" not found')
                    return self.reply(200, json.dumps(obj(r["kvs"][0])), "application/json")
                if self.command == "GET":
                    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
                    r = state.etcd_call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
                    items = [obj(kv) for kv in r.get("kvs") or []]
                    rv = str((r.get("header") or {}).get("revision", "0"))
                    return self.reply(200, json.dumps({"kind": "ConfigMapList", "apiVersion": "v1",
                                                       "metadata": {"resourceVersion": rv}, "items": items}),
                                      "application/json")
                if self.command == "POST" and not name:
                    o = json.loads(body or b"{}")
                    o.setdefault("metadata", {})["namespace"] = ns
                    nm = o["metadata"].get("name")
                    if not nm:
                        return self.status(422, "Invalid", "ConfigMap: metadata.name: Required value")
                    o["metadata"]["creationTimestamp"] = rfc3339(now())
                    o.setdefault("kind", "ConfigMap")
                    o.setdefault("apiVersion", "v1")
                    key = b64(prefix + nm)
                    r = state.etcd_call("/v3/kv/txn", {
                        "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                        "success": [{"request_put": {"key": key, "value": b64(json.dumps(o))}}]})
                    if not r.get("succeeded"):
                        return self.status(409, "AlreadyExists", f'configmaps "{nm}" already exists')
                    o["metadata"]["resourceVersion"] = str(r["header"]["revision"])
                    return self.reply(201, json.dumps(o), "application/json")
                if self.command == "DELETE" and name:
                    r = state.etcd_call("/v3/kv/deleterange", {"key": b64(prefix + name)})
                    if int(r.get("deleted", 0)) == 0:
                        return self.status(404, "NotFound", f'configmaps "{name}" not found')
                    return self.reply(200, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                                      "application/json")
                return self.status(405, "MethodNotAllowed", f"{self.command} on configmaps in {ns}: not served by the stand-in")
            except (OSError, ValueError, http.client.HTTPException, ssl.SSLError) as e:
                return self.status(500, "InternalError", f"etcd: {e}")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def server_bind(self):
            # Not HTTPServer's: its socket.getfqdn() is a reverse DNS
            # lookup, which waits for the resolver's timeout on a lab host.
            import socketserver
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = self.server_address[:2]

        def get_request(self):
            sock, addr = self.socket.accept()
            ctx = state.load()
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        def handle_error(self, request, client_address):
            pass

    srv = Server((bind, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"{rfc3339(now())} kube-apiserver (hacli testlab stand-in) serving on {bind}:{port}, store {state.store}", file=sys.stderr, flush=True)
    srv.serve_forever()


def sleeper_main(name):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{name} (hacli testlab stand-in): running", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


# ---------------------------------------------------------------- crictl

def crictl(argv):
    """`crictl ps [-a] [-q] [--name RE] [--state S]`, `crictl stop|rm ID...`
    over the kubelet stand-in's static pods (the container id is derived
    from the process id)."""
    pos, fl = flags(argv, ("a", "all", "q", "quiet", "v", "verbose"))
    if not pos:
        raise Fail("crictl (stand-in): ps, stop, rm")
    cmd = pos[0]
    rows = []
    for f in sorted(os.listdir(PODS)) if os.path.isdir(PODS) else []:
        if not f.endswith(".json"):
            continue
        name = f[:-5]
        st = pod_state(name)
        if not st:
            continue
        cid = hashlib.sha256(f"{name}:{st['pid']}:{st['started']}".encode()).hexdigest()
        rows.append((cid, name, st, pid_alive(st["pid"])))
    if cmd == "ps":
        import re
        want = fl.get("name")
        state = (fl.get("state") or "").lower()
        sel = [r for r in rows if (not want or re.search(want, r[1]))
               and ("a" in fl or "all" in fl or r[3] or state == "exited")
               and (not state or (state == "running") == r[3])]
        if "q" in fl or "quiet" in fl:
            for r in sel:
                out(r[0])
            return 0
        out(f"{'CONTAINER':<20}{'IMAGE':<20}{'CREATED':<20}{'STATE':<12}{'NAME':<26}{'ATTEMPT':<10}POD ID")
        for cid, name, st, alive in sel:
            out(f"{cid[:13]:<20}{name:<20}{st['started']:<20}{'Running' if alive else 'Exited':<12}{name:<26}"
                f"{st.get('restarts', 0):<10}{cid[13:26]}")
        return 0
    if cmd in ("stop", "rm"):
        for want in pos[1:]:
            hit = [r for r in rows if r[0].startswith(want)]
            if not hit:
                raise Fail(f'container "{want}" not found')
            for cid, name, st, alive in hit:
                if alive:
                    kill_wait(st["pid"])
                out(cid)
        return 0
    raise Fail(f"crictl (stand-in): unsupported command {cmd}")


# ---------------------------------------------------------------- main

# Every kubeadm call appends its own /proc/self/cmdline here (one JSON list a
# line): what any local user could read of it while it ran.
CMDLINE_LOG = LOGS + "/kubeadm-cmdline.log"


def record_cmdline():
    try:
        words = [w.decode(errors="replace") for w in read("/proc/self/cmdline").split(b"\0")[:-1]]
        os.makedirs(LOGS, exist_ok=True)
        with open(CMDLINE_LOG, "a") as f:
            f.write(json.dumps(words) + "\n")
    except OSError as e:
        print(f"kubeadm (stand-in): cannot record the command line: {e}", file=sys.stderr)


def main():
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if prog.endswith(".py") and args:
        prog, args = args[0], args[1:]
    try:
        if prog == "kubeadm":
            record_cmdline()
            return kubeadm(args)
        if prog == "kubelet":
            if "--version" in args:
                out(f"Kubernetes {versions()['kubelet']}")
                return 0
            return kubelet_main()
        if prog == "containerd":
            if "--version" in args or "-v" in args:
                out(f"containerd github.com/containerd/containerd v{versions()['containerd'].lstrip('v')} 88bf19b2105c8b17560993bee28a01ddc2f97182")
                return 0
            return sleeper_main("containerd")
        if prog == "kube-apiserver":
            return apiserver_main(args)
        if prog in ("kube-controller-manager", "kube-scheduler"):
            return sleeper_main(prog)
        if prog == "systemctl":
            return systemctl(args)
        if prog == "crictl":
            return crictl(args)
        if prog == "testlab-boot":
            return boot()
        if prog in ("reboot", "shutdown", "poweroff", "halt"):
            return shutdown(prog, args)
        print(f"standin: unknown program {prog}", file=sys.stderr)
        return 2
    except Fail as e:
        print(f"error execution phase: {e}" if prog == "kubeadm" else str(e), file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"{prog}: {e.cmd[0]} timed out after {e.timeout}s", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main() or 0)
