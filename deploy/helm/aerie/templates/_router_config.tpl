{{- /* The router's configuration file: router.config plus what the chart owns (listen, auth,
       tls, queue.dir, and the outputs the values switch on). Secrets stay in files under
       /secrets; the config only names them. */ -}}
{{- define "aerie.routerConfig" -}}
{{- $v := .Values -}}
{{- $c := deepCopy $v.router.config -}}
{{- $_ := set $c "listen" (printf "0.0.0.0:%d" (int $v.router.port)) -}}
{{- if $v.router.auth.enabled -}}
{{- $_ := set $c "auth" (dict "bearer_token_file" "/secrets/ingest-token" "protect_metrics" $v.router.auth.protectMetrics) -}}
{{- end -}}
{{- if $v.router.tls.enabled -}}
{{- $_ := set $c "tls" (dict "cert_file" "/etc/aerie/tls/tls.crt" "key_file" "/etc/aerie/tls/tls.key") -}}
{{- end -}}
{{- $q := deepCopy (default dict $c.queue) -}}
{{- $_ := set $q "dir" "/var/lib/aerie/queue" -}}
{{- $_ := set $c "queue" $q -}}
{{- $outs := list -}}
{{- if $v.router.stdout.enabled -}}
{{- $o := dict "name" "stdout" "type" "stdout" -}}
{{- with $v.router.stdout.minimumpriority }}{{ $_ := set $o "min_priority" . }}{{ end -}}
{{- $outs = append $outs $o -}}
{{- end -}}
{{- if $v.router.archive.enabled -}}
{{- $outs = append $outs (dict "name" "archive" "type" "file" "path" "/var/lib/aerie/archive/alerts.jsonl" "fsync" "interval" "max_size" $v.router.archive.maxSize "max_files" (int $v.router.archive.maxFiles)) -}}
{{- end -}}
{{- if include "aerie.slackEnabled" . -}}
{{- $o := dict "name" "slack" "type" "slack" "webhook_url_file" "/secrets/slack-webhook" -}}
{{- with $v.config.slack.minimumpriority }}{{ $_ := set $o "min_priority" . }}{{ end -}}
{{- $outs = append $outs $o -}}
{{- end -}}
{{- if include "aerie.pagerdutyEnabled" . -}}
{{- $o := dict "name" "pagerduty" "type" "pagerduty" "routing_key_file" "/secrets/pagerduty-routing-key" -}}
{{- if eq $v.config.pagerduty.region "eu" }}{{ $_ := set $o "url" "https://events.eu.pagerduty.com/v2/enqueue" }}{{ end -}}
{{- with $v.config.pagerduty.minimumpriority }}{{ $_ := set $o "min_priority" . }}{{ end -}}
{{- $outs = append $outs $o -}}
{{- end -}}
{{- if $v.config.webhook.address -}}
{{- $o := dict "name" "webhook" "type" "webhook" "url" $v.config.webhook.address -}}
{{- with $v.config.webhook.minimumpriority }}{{ $_ := set $o "min_priority" . }}{{ end -}}
{{- $outs = append $outs $o -}}
{{- end -}}
{{- $_ := set $c "outputs" (concat $outs (default list $c.outputs)) -}}
{{- toYaml $c -}}
{{- end -}}
