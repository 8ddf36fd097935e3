{{/*
One Deployment of the one image running one role:
(dict "root" $ "role" "gateway" "component" "gateway" "replicas" 3 "hpa" true
      "consumer" false "ports" (list (dict "name" "https" "port" 8443))
      "liveness" (dict ...) "readiness" (dict ...) "resources" (dict ...)
      "env" (list ...) optional, more container variables)
*/}}
{{- define "caracal.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "caracal.fullname" $root }}-{{ .component }}
  namespace: {{ include "caracal.namespace" $root }}
  labels:
    {{- include "caracal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- if .consumer }}
    app.kubernetes.io/part-of: consumers
    {{- end }}
spec:
  {{- if not .hpa }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "caracal.selector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "caracal.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- if .consumer }}
        app.kubernetes.io/part-of: consumers
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    spec:
      {{- include "caracal.podSpecCommon" $root | trim | nindent 6 }}
      terminationGracePeriodSeconds: 30
      {{- with .affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "caracal.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["serve", "--role", {{ .role | quote }}]
          env:
            {{- include "caracal.env" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          livenessProbe:
            {{- include "caracal.httpProbe" .liveness | nindent 12 }}
          readinessProbe:
            {{- include "caracal.httpProbe" .readiness | nindent 12 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "caracal.volumeMounts" (dict "root" $root "role" .role) | nindent 12 }}
      volumes:
        {{- include "caracal.volumes" (dict "root" $root "role" .role) | nindent 8 }}
{{- end -}}

{{/* A Service in front of one component: (dict "root" $ "component" "gateway" "type" "ClusterIP" "ports" (list ...)) */}}
{{- define "caracal.service" -}}
{{- $root := .root -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "caracal.fullname" $root }}-{{ .component }}
  namespace: {{ include "caracal.namespace" $root }}
  labels:
    {{- include "caracal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- if .consumer }}
    app.kubernetes.io/part-of: consumers
    {{- end }}
spec:
  type: {{ .type | default "ClusterIP" }}
  selector:
    {{- include "caracal.selector" (dict "root" $root "component" .component) | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: TCP
    {{- end }}
{{- end -}}
