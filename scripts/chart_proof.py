#!/usr/bin/env python3
"""Pod-start proof for one rendered chart (run by scripts/chart-test, as root).

Reads the manifests `helm template` rendered and starts what the kubelet would start, as
closely as one machine without Kubernetes allows:

- router: its ConfigMap, Secret (or the test's stand-in for an existing Secret) and queue
  volume laid out with the ownership and modes the kubelet gives them for the pod's
  securityContext (secret files root:fsGroup, mode defaultMode|0440 with fsGroup; a writable
  volume chowned to fsGroup, g+rwX, setgid; fsGroup as a supplementary group), bind-mounted at
  the rendered paths over a read-only root in a private mount and network namespace; then
  `aerie-router check-config` and `aerie-router serve` as the rendered uid/gid, with the
  startup probe's request answered, a test alert posted and its delivery to the archive seen.
- detector: the rendered args and environment passed to `aerie-detector check-config` with
  the rules ConfigMap, Secret and CA mounted where the pod has them.

Usage: chart_proof.py RENDERED.yaml WORKDIR ROUTER_BIN DETECTOR_BIN
Exit 0 when everything started; 1 with the failing step's output otherwise.
"""

import base64
import os
import shlex
import subprocess
import sys
import textwrap

import yaml

# Secrets a value set expects to exist in the cluster (test-values/*.yaml name them).
EXTERNAL_SECRETS = {
    "aerie-ops": {
        "token": "ops-token-0123456789abcdef",
        "slack-url": "https://hooks.slack.com/services/T111/B111/YYYYYYYY",
        "pd-key": "R99999999999999999999999999999999",
    },
}


def fail(msg):
    print(f"chart-proof: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return docs


def find(docs, kind, suffix):
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"].endswith(suffix):
            return d
    return None


def secret_data(docs, name, tls_pki):
    """The Secret's data as the API server would hold it."""
    if name in EXTERNAL_SECRETS:
        return EXTERNAL_SECRETS[name]
    if name == "aerie-router-tls":
        return tls_pki
    s = find(docs, "Secret", name)
    if s is None or s["metadata"]["name"] != name:
        fail(f"Secret {name} is neither rendered nor a test stand-in")
    out = dict(s.get("stringData") or {})
    for k, v in (s.get("data") or {}).items():
        out[k] = base64.b64decode(v).decode()
    return out


def make_pki(work):
    """A CA and a server certificate for the router Service (for router.tls.secretName)."""
    d = os.path.join(work, "pki")
    os.makedirs(d, exist_ok=True)
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=aerie test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=aerie-router",
        "-keyout", "tls.key", "-out", "tls.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:rel-aerie-router.aerie.svc,DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "tls.crt")
    return {k: open(os.path.join(d, k)).read() for k in ("ca.crt", "tls.crt", "tls.key")}


class Layout:
    """Volume sources for one pod, with the kubelet's ownership and modes."""

    def __init__(self, work, pod_spec, docs, tls_pki):
        self.work = work
        self.docs = docs
        self.tls_pki = tls_pki
        sc = pod_spec.get("securityContext") or {}
        self.fs_group = sc.get("fsGroup")
        self.volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        self.pvcs = set()

    def source(self, name):
        """The host directory holding volume `name`, laid out as the kubelet would."""
        d = os.path.join(self.work, "vol", name)
        if os.path.exists(d):
            return d
        os.makedirs(d)
        v = self.volumes.get(name)
        fsg = self.fs_group
        if v is None and name in self.pvcs:
            # A fresh PersistentVolume: the provisioner's root-owned 0755 directory.
            os.chmod(d, 0o755)
            self.writable(d)
        elif v is None:
            fail(f"volume {name} is mounted but not defined")
        elif "configMap" in v:
            cm = find(self.docs, "ConfigMap", v["configMap"]["name"])
            if cm is None:
                fail(f"ConfigMap {v['configMap']['name']} is not rendered")
            mode = v["configMap"].get("defaultMode", 0o644)
            for k, text in cm["data"].items():
                self.file(d, k, text, mode, fsg)
        elif "secret" in v:
            s = v["secret"]
            data = secret_data(self.docs, s["secretName"], self.tls_pki)
            mode = s.get("defaultMode", 0o644)
            items = s.get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                if it["key"] not in data:
                    fail(f"Secret {s['secretName']} has no key {it['key']} (volume {name})")
                self.file(d, it["path"], data[it["key"]], it.get("mode", mode), fsg)
        elif "emptyDir" in v:
            os.chmod(d, 0o777)
            self.writable(d)
        else:
            fail(f"volume {name}: no stand-in for {sorted(v)}")
        return d

    def file(self, d, path, text, mode, fsg):
        p = os.path.join(d, path)
        with open(p, "w") as f:
            f.write(text)
        # Secret and ConfigMap files: root-owned; with fsGroup, group fsGroup and g+r.
        if fsg is not None:
            os.chown(p, 0, fsg)
            mode |= 0o440
        else:
            os.chown(p, 0, 0)
        os.chmod(p, mode)
        os.chmod(d, 0o755 if fsg is None else 0o2755)
        if fsg is not None:
            os.chown(d, 0, fsg)

    def writable(self, d):
        if self.fs_group is not None:
            os.chown(d, 0, self.fs_group)
            st = os.stat(d).st_mode & 0o7777
            g = 0o070 if st & 0o100 else 0o060
            os.chmod(d, st | g | 0o2000)


def mount_script(root, mounts, readonly_root=True, hosts=()):
    """Shell lines that build `root` (host /usr and friends read-only) and bind the volume
    sources at their mount paths; `hosts` resolve to 127.0.0.1 inside it."""
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        f"mkdir -p {root}",
        f"mount -t tmpfs -o mode=0755 rootfs {root}",
    ]
    for top in ("usr", "etc", "dev", "proc", "sys"):
        lines.append(f"mkdir -p {root}/{top}")
    for link in ("bin", "sbin", "lib", "lib64", "lib32"):
        if os.path.islink("/" + link):
            lines.append(f"ln -s {os.readlink('/' + link)} {root}/{link}")
        elif os.path.isdir("/" + link):
            lines.append(f"mkdir -p {root}/{link} && mount --bind /{link} {root}/{link}")
    lines += [
        f"mount --bind /usr {root}/usr && mount -o remount,bind,ro {root}/usr",
        f"mount --rbind /dev {root}/dev",
        f"mount -t proc proc {root}/proc",
        f"mount --bind /sys {root}/sys",
        # /etc: an empty directory plus what name resolution of 127.0.0.1/localhost needs.
        f"printf '127.0.0.1 localhost {' '.join(hosts)}\\n' > {root}/etc/hosts",
        f"printf 'root:x:0:0::/:/bin/sh\\n' > {root}/etc/passwd",
    ]
    for src, dst, ro, is_file in mounts:
        target = f"{root}{dst}"
        if is_file:
            lines.append(f"mkdir -p $(dirname {target}) && touch {target}")
        else:
            lines.append(f"mkdir -p {target}")
    if readonly_root:
        lines.append(f"mount -o remount,ro {root}")
    for src, dst, ro, is_file in mounts:
        target = f"{root}{dst}"
        lines.append(f"mount --bind {src} {target}")
        if ro:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append("ip link set lo up")
    return lines


def container_mounts(layout, container):
    mounts = []
    for m in container.get("volumeMounts") or []:
        src = layout.source(m["name"])
        if "subPath" in m:
            src = os.path.join(src, m["subPath"])
        mounts.append((src, m["mountPath"], m.get("readOnly", False), os.path.isfile(src)))
    return mounts


def prove_router(docs, work, router_bin, tls_pki):
    sts = find(docs, "StatefulSet", "-router")
    if sts is None:
        fail("no router StatefulSet rendered")
    spec = sts["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    layout = Layout(work, spec, docs, tls_pki)
    for t in sts["spec"].get("volumeClaimTemplates") or []:
        layout.pvcs.add(t["metadata"]["name"])
    psc = spec.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    if uid is None or gid is None:
        fail("the router pod sets no runAsUser/runAsGroup (the image's user would be guessed)")
    if uid == 0 and (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        fail("runAsNonRoot with uid 0")
    groups = [g for g in [psc.get("fsGroup")] + list(psc.get("supplementalGroups") or []) if g is not None]
    if not csc.get("readOnlyRootFilesystem"):
        fail("the router's root filesystem is writable")
    mounts = container_mounts(layout, c)
    root = os.path.join(work, "root")
    # The binary itself, bound read-only (no copy: debug builds are large).
    mounts.append((os.path.abspath(router_bin), "/opt/aerie/aerie-router", True, True))

    probe = c["startupProbe"]["httpGet"]
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == probe["port"])
    scheme = probe.get("scheme", "HTTP").lower()
    curl = "curl -sS --max-time 5"
    if scheme == "https":
        curl += f" --cacert {work}/pki/ca.crt"
    token = None
    for m in c.get("volumeMounts") or []:
        if m["mountPath"] == "/secrets":
            p = os.path.join(layout.source(m["name"]), "ingest-token")
            if os.path.exists(p):
                token = open(p).read()
    auth = f"-H {shlex.quote('Authorization: Bearer ' + token)}" if token else ""
    groups_arg = ("--groups " + ",".join(str(g) for g in groups)) if groups else "--clear-groups"
    args = " ".join(shlex.quote(a) for a in c["args"])
    config = c["args"][c["args"].index("--config") + 1]
    drop = f"chroot {root} setpriv --reuid {uid} --regid {gid} {groups_arg} --inh-caps=-all --bounding-set=-all"
    archive = [m for m in mounts if m[1] == "/var/lib/aerie"]
    lines = mount_script(root, mounts) + [
        f"echo '-- router: check-config as uid {uid} gid {gid} ({groups_arg})'",
        f"{drop} /opt/aerie/aerie-router check-config --config {config}",
        f"echo '-- router: serve; waiting for the startup probe ({scheme}://127.0.0.1:{port}{probe['path']})'",
        f"{drop} /opt/aerie/aerie-router {args} > {work}/router.log 2>&1 &",
        "pid=$!",
        "trap 'kill $pid 2>/dev/null || true' EXIT",
        "ok=",
        "for i in $(seq 1 300); do",
        f"  if {curl} -f {scheme}://127.0.0.1:{port}{probe['path']} >/dev/null 2>&1; then ok=1; break; fi",
        "  kill -0 $pid 2>/dev/null || break",
        "  sleep 0.2",
        "done",
        f'if [ -z "$ok" ]; then echo "router did not answer {probe["path"]}:"; cat {work}/router.log; kill $pid 2>/dev/null; exit 1; fi',
    ]
    test_pod = next((d for d in docs if d["kind"] == "Pod"
                     and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"), None)
    if test_pod is not None:
        lines += helm_test_lines(docs, work, test_pod, tls_pki)
    else:
        lines += [
            "echo '-- router: /healthz answered; posting a test alert'",
            f"{curl} -f -X POST {auth} {scheme}://127.0.0.1:{port}/test",
            "echo",
        ]
    if archive:
        f = f"{archive[0][0]}/archive/alerts.jsonl"
        lines += [
            "ok=",
            "for i in $(seq 1 300); do",
            f"  if grep -q 'This is a test from aerie-router' {f} 2>/dev/null; then ok=1; break; fi",
            "  sleep 0.2",
            "done",
            f'if [ -z "$ok" ]; then echo "test alert not in the archive"; cat {work}/router.log; kill $pid; exit 1; fi',
            f"echo '-- router: test alert delivered to the archive'; stat -c '%u:%g %a %n' {archive[0][0]}/queue {f}",
            # Written by the router process itself, so owned by the rendered uid.
            f'[ "$(stat -c %u {f})" = {uid} ] || {{ echo "the archive is not owned by uid {uid}"; exit 1; }}',
        ]
    lines += [
        "kill -TERM $pid",
        "wait $pid || { echo 'router exited with an error on SIGTERM:'; cat " + f"{work}/router.log; exit 1; }}",
        "echo '-- router: stopped cleanly on SIGTERM'",
    ]
    return lines


def helm_test_lines(docs, work, pod, tls_pki):
    """Run the `helm test` pod's command in its own root (its volumes, its uid/gid), with the
    router Service's name resolving to the router started above."""
    spec = pod["spec"]
    (c,) = spec["containers"]
    layout = Layout(os.path.join(work, "testpod"), spec, docs, tls_pki)
    os.makedirs(layout.work, exist_ok=True)
    mounts = container_mounts(layout, c)
    svc = find(docs, "Service", "-router")["metadata"]["name"]
    host = f"{svc}.{pod['metadata']['namespace']}.svc"
    psc = spec.get("securityContext") or {}
    fsg = psc.get("fsGroup")
    groups = f"--groups {fsg}" if fsg is not None else "--clear-groups"
    root = os.path.join(work, "troot")
    cmd = " ".join(shlex.quote(a) for a in (c.get("command") or []) + (c.get("args") or []))
    return mount_script(root, mounts, hosts=[host]) + [
        f"echo '-- helm test pod {pod['metadata']['name']}: its script, as uid {psc.get('runAsUser')}'",
        f"if ! chroot {root} setpriv --reuid {psc['runAsUser']} --regid {psc['runAsGroup']} {groups} "
        f"--inh-caps=-all --bounding-set=-all {cmd} > {work}/helm-test.log 2>&1; then "
        f"sed 's/^/  /' {work}/helm-test.log; echo 'helm test pod failed; router log:'; "
        f"cat {work}/router.log; kill $pid; exit 1; fi",
        f"sed 's/^/  /' {work}/helm-test.log",
    ]


def prove_detector(docs, work, detector_bin, tls_pki):
    ds = find(docs, "DaemonSet", "-detector")
    if ds is None:
        fail("no detector DaemonSet rendered")
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    layout = Layout(os.path.join(work, "detector"), spec, docs, tls_pki)
    os.makedirs(layout.work, exist_ok=True)
    mounts = []
    for m in c.get("volumeMounts") or []:
        v = layout.volumes[m["name"]]
        if "hostPath" in v:
            continue  # node directories: not needed by check-config
        src = layout.source(m["name"])
        mounts.append((src, m["mountPath"], m.get("readOnly", False), False))
    root = os.path.join(work, "droot")
    mounts.append((os.path.abspath(detector_bin), "/opt/aerie/aerie-detector", True, True))
    env = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = "node-1"
        else:
            fail(f"detector env {e['name']}: no stand-in for {e}")
    if c["args"][0] != "run":
        fail(f"the detector's first argument is {c['args'][0]}, not run")
    args = " ".join(shlex.quote(a) for a in ["check-config"] + c["args"][1:])
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    lines = mount_script(root, mounts) + [
        "echo '-- detector: check-config with the rendered args and env'",
        f"chroot {root} env -i {envs} /opt/aerie/aerie-detector {args}",
    ]
    return lines


def main():
    rendered, work, router_bin, detector_bin = sys.argv[1:5]
    docs = load(rendered)
    os.makedirs(work, exist_ok=True)
    tls_pki = make_pki(work)
    for name, lines in (
        ("router", prove_router(docs, work, router_bin, tls_pki)),
        ("detector", prove_detector(docs, work, detector_bin, tls_pki)),
    ):
        script = os.path.join(work, f"{name}.sh")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run(
            # Own PID namespace: whatever the script started dies with it (--kill-child).
            ["unshare", "--fork", "--pid", "--kill-child", "--mount", "--net",
             "--propagation", "private", "/bin/sh", script],
            capture_output=True, text=True, timeout=180,
        )
        sys.stdout.write(textwrap.indent(r.stdout, "   "))
        if r.returncode != 0:
            sys.stdout.write(textwrap.indent(r.stderr, "   "))
            fail(f"{name} did not start (script {script})")
    print("chart-proof: OK")


if __name__ == "__main__":
    main()
