{{- /* Names, labels, images and the values checks every template shares. */ -}}

{{- define "aerie.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "aerie.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aerie.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* image reference: repository, then @digest when given, else :tag (default appVersion) */ -}}
{{- define "aerie.image" -}}
{{- $img := index .root.Values.image .component -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "aerie.secretName" -}}
{{- default (printf "%s-secrets" (include "aerie.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "aerie.serviceAccountName" -}}
{{- $sa := index .root.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "aerie.fullname" .root) .component) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{- define "aerie.routerHost" -}}
{{- printf "%s-router.%s.svc" (include "aerie.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- /* The detectors' alert URL: one port value, http or https by router.tls.enabled. */ -}}
{{- define "aerie.routerURL" -}}
{{- printf "%s://%s:%d/" (ternary "https" "http" .Values.router.tls.enabled) (include "aerie.routerHost" .) (int .Values.router.port) -}}
{{- end -}}

{{- define "aerie.slackEnabled" -}}
{{- if or .Values.config.slack.enabled .Values.config.slack.webhookurl }}true{{ end -}}
{{- end -}}

{{- define "aerie.pagerdutyEnabled" -}}
{{- if or .Values.config.pagerduty.enabled .Values.config.pagerduty.routingkey }}true{{ end -}}
{{- end -}}

{{- /* Values that cannot work together fail the render with the reason and the fix. */ -}}
{{- define "aerie.validate" -}}
{{- if gt (int .Values.router.replicas) 1 -}}
{{- fail (printf "router.replicas=%d: more than one router replica needs shared dedup and rate-limit state (router HA with Redis), which this chart version does not support; replicas that each dedup on their own page on-call once per replica. Use router.replicas=1: its queue is durable on its volume and the StatefulSet restarts it." (int .Values.router.replicas)) -}}
{{- end -}}
{{- $cfg := .Values.router.config -}}
{{- range $k := list "listen" "auth" "tls" -}}
{{- if hasKey $cfg $k -}}
{{- fail (printf "router.config.%s is set by the chart: use router.port, router.auth and router.tls instead" $k) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $cfg "queue") (hasKey $cfg.queue "dir") -}}
{{- fail "router.config.queue.dir is set by the chart (the queue volume): remove it" -}}
{{- end -}}
{{- if and .Values.router.tls.enabled (not .Values.router.tls.secretName) -}}
{{- fail "router.tls.enabled needs router.tls.secretName: a kubernetes.io/tls Secret (tls.crt, tls.key and the CA under router.tls.caKey)" -}}
{{- end -}}
{{- if and .Values.config.slack.enabled (not .Values.config.slack.webhookurl) (not .Values.secrets.existingSecret) -}}
{{- fail "config.slack.enabled needs config.slack.webhookurl or a secrets.existingSecret holding it" -}}
{{- end -}}
{{- if and .Values.config.pagerduty.enabled (not .Values.config.pagerduty.routingkey) (not .Values.secrets.existingSecret) -}}
{{- fail "config.pagerduty.enabled needs config.pagerduty.routingkey or a secrets.existingSecret holding it" -}}
{{- end -}}
{{- if and .Values.secrets.existingSecret (or .Values.config.slack.webhookurl .Values.config.pagerduty.routingkey .Values.secrets.ingestToken) -}}
{{- fail "secrets.existingSecret is set: put the Slack webhook, PagerDuty routing key and ingest token in that Secret, not in config.*/secrets.ingestToken" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.detector.k8sAudit.enabled (not .Values.networkPolicy.auditFrom) -}}
{{- fail "networkPolicy.enabled with detector.k8sAudit.enabled needs networkPolicy.auditFrom (the API servers' addresses), else the audit webhook is blocked" -}}
{{- end -}}
{{- $seen := dict -}}
{{- if .Values.detector.defaultRules }}{{ $_ := set $seen "aerie_rules.yaml" true }}{{ end -}}
{{- range .Values.rules.custom -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "rules.custom: %s is given twice or clashes with the default aerie_rules.yaml: give each file its own name" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- if and (not .Values.detector.defaultRules) (not .Values.rules.custom) -}}
{{- fail "detector.defaultRules=false needs rules.custom: a detector without rules detects nothing" -}}
{{- end -}}
{{- end -}}

{{- /* The ingest token: the value, else the one in the cluster (upgrades), else required. Never
       generated, so `helm template` and `helm upgrade` always render the same token. */ -}}
{{- define "aerie.ingestToken" -}}
{{- $token := .Values.secrets.ingestToken -}}
{{- if not $token -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "aerie.secretName" .) -}}
{{- if and $old $old.data (hasKey $old.data .Values.secrets.keys.ingestToken) -}}
{{- $token = index $old.data .Values.secrets.keys.ingestToken | b64dec -}}
{{- end -}}
{{- end -}}
{{- required "secrets.ingestToken is required on a first install (the token the detectors present to the router): --set secrets.ingestToken=$(openssl rand -hex 20), or set secrets.existingSecret, or turn ingest auth off with router.auth.enabled=false" $token -}}
{{- end -}}

{{- /* The detector's rule files, in load order. */ -}}
{{- define "aerie.ruleFiles" -}}
{{- $files := list -}}
{{- if .Values.detector.defaultRules }}{{ $files = append $files "/etc/aerie/rules/aerie_rules.yaml" }}{{ end -}}
{{- range .Values.rules.custom }}{{ $files = append $files (printf "/etc/aerie/rules/%s" .name) }}{{ end -}}
{{- toJson $files -}}
{{- end -}}

{{- /* Pod-template checksums: every ConfigMap and Secret the component reads, so that a
       change to any of them rolls the pods. A secrets.existingSecret is outside the chart:
       rotate it with `kubectl rollout restart` (deploy/README.md). */ -}}
{{- define "aerie.checksums" -}}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if eq .component "router" }}
checksum/config: {{ include (print .root.Template.BasePath "/configmap-router.yaml") .root | sha256sum }}
{{- else }}
checksum/rules: {{ include (print .root.Template.BasePath "/configmap-rules.yaml") .root | sha256sum }}
checksum/config: {{ include (print .root.Template.BasePath "/configmap-detector.yaml") .root | sha256sum }}
{{- end }}
{{- end -}}

{{- /* The router's Secret items (key -> file under /secrets), as YAML; empty when none. */ -}}
{{- define "aerie.routerSecretItems" -}}
{{- $k := .Values.secrets.keys -}}
{{- if .Values.router.auth.enabled }}
- { key: {{ $k.ingestToken }}, path: ingest-token }
{{- end }}
{{- if include "aerie.slackEnabled" . }}
- { key: {{ $k.slackWebhook }}, path: slack-webhook }
{{- end }}
{{- if include "aerie.pagerdutyEnabled" . }}
- { key: {{ $k.pagerdutyRoutingKey }}, path: pagerduty-routing-key }
{{- end }}
{{- end -}}
