{{/* Names, labels and the pieces every Caracal pod shares. */}}

{{- define "caracal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "caracal.namespace" -}}
{{- .Values.global.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Labels of every object; `component` is added per object. */}}
{{- define "caracal.labels" -}}
app.kubernetes.io/name: caracal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "caracal.selector" -}}
app.kubernetes.io/name: caracal
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "caracal.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "caracal.secretName" -}}
{{- .Values.secrets.existingSecret | default .Values.secrets.name -}}
{{- end -}}

{{- define "caracal.postgresHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgres" (include "caracal.fullname" .) -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.enabled is false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "caracal.redisHost" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-redis" (include "caracal.fullname" .) -}}
{{- else -}}
{{- .Values.redis.host -}}
{{- end -}}
{{- end -}}

{{/* Kafka bootstrap servers as a list of host:port. */}}
{{- define "caracal.kafkaBrokers" -}}
{{- $brokers := list -}}
{{- if .Values.kafka.enabled -}}
{{- $full := include "caracal.fullname" . -}}
{{- $ns := include "caracal.namespace" . -}}
{{- range $i := until (int .Values.kafka.replicaCount) -}}
{{- $brokers = append $brokers (printf "%s-kafka-%d.%s-kafka.%s.svc:9092" $full $i $full $ns) -}}
{{- end -}}
{{- else -}}
{{- $brokers = .Values.kafka.brokers -}}
{{- end -}}
{{- toJson $brokers -}}
{{- end -}}

{{/*
Pod spec parts shared by every Caracal container: (dict "root" $ "role" "gateway").
The config and the secrets are files; the only writable path is the data volume.
*/}}
{{- define "caracal.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: config
  mountPath: /etc/caracal/caracal.yaml
  subPath: caracal.yaml
  readOnly: true
- name: secrets
  mountPath: /etc/caracal/secrets
  readOnly: true
- name: data
  mountPath: /var/lib/caracal
{{- if and (eq .role "gateway") $v.gateway.tls.secretName }}
- name: tls
  mountPath: /etc/caracal/tls
  readOnly: true
{{- end }}
{{- if and (eq .role "ledger") $v.consumers.ledgerWriter.merkle.signingKeySecretName }}
- name: merkle-keys
  mountPath: /etc/caracal/keys
  readOnly: true
{{- end }}
{{- if $v.postgresql.ssl.secretName }}
- name: postgres-tls
  mountPath: /etc/caracal/postgres-tls
  readOnly: true
{{- end }}
{{- if $v.redis.tls.secretName }}
- name: redis-tls
  mountPath: /etc/caracal/redis-tls
  readOnly: true
{{- end }}
{{- if $v.kafka.ssl.secretName }}
- name: kafka-tls
  mountPath: /etc/caracal/kafka-tls
  readOnly: true
{{- end }}
{{- if $v.kafka.security.saslPasswordSecret }}
- name: kafka-sasl
  mountPath: /etc/caracal/kafka-sasl
  readOnly: true
{{- end }}
{{- /* Credentials are read when caracal.yaml loads: every pod that loads it mounts them. */}}
{{- range (include "caracal.upstreamSecrets" .root | fromJsonArray) }}
- name: upstream-{{ . }}
  mountPath: /etc/caracal/upstreams/{{ . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "caracal.volumes" -}}
{{- $v := .root.Values -}}
- name: config
  configMap:
    name: {{ include "caracal.fullname" .root }}-config
- name: secrets
  secret:
    secretName: {{ include "caracal.secretName" .root }}
    defaultMode: 0440
- name: data
  emptyDir: {}
{{- if and (eq .role "gateway") $v.gateway.tls.secretName }}
- name: tls
  secret:
    secretName: {{ $v.gateway.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if and (eq .role "ledger") $v.consumers.ledgerWriter.merkle.signingKeySecretName }}
- name: merkle-keys
  secret:
    secretName: {{ $v.consumers.ledgerWriter.merkle.signingKeySecretName }}
    defaultMode: 0440
{{- end }}
{{- if $v.postgresql.ssl.secretName }}
- name: postgres-tls
  secret:
    secretName: {{ $v.postgresql.ssl.secretName }}
    defaultMode: 0440
{{- end }}
{{- if $v.redis.tls.secretName }}
- name: redis-tls
  secret:
    secretName: {{ $v.redis.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if $v.kafka.ssl.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $v.kafka.ssl.secretName }}
    defaultMode: 0440
{{- end }}
{{- if $v.kafka.security.saslPasswordSecret }}
- name: kafka-sasl
  secret:
    secretName: {{ $v.kafka.security.saslPasswordSecret }}
    defaultMode: 0440
{{- end }}
{{- range (include "caracal.upstreamSecrets" .root | fromJsonArray) }}
- name: upstream-{{ . }}
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* The Secrets holding upstream credentials (routes and MCP servers), each once. */}}
{{- define "caracal.upstreamSecrets" -}}
{{- $names := list -}}
{{- range concat .Values.gateway.routes .Values.mcpAdapter.servers -}}
{{- if .credentialSecret }}{{ $names = append $names .credentialSecret }}{{ end -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* Environment of every Caracal container. */}}
{{- define "caracal.env" -}}
- name: CARACAL_CONFIG
  value: /etc/caracal/caracal.yaml
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{- define "caracal.podSpecCommon" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
{{- end -}}

{{- define "caracal.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .port }}
  scheme: {{ .scheme | default "HTTP" }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}
