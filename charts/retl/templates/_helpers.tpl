{{/* Labels Helm adds to every object it renders (tests/helm.rs ignores
exactly these when it compares the chart with deploy/). */}}
{{- define "retl.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The operator's Pods: the Deployment's selector (immutable, so never
anything that changes between releases). */}}
{{- define "retl.selectorLabels" -}}
app.kubernetes.io/name: retl
app.kubernetes.io/component: operator
{{- end }}

{{- define "retl.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
