-- Argo CD health of a retl Source, Model, Destination or SyncAlert: its
-- Ready condition, once the operator has checked the latest spec.
local hs = {}
local st = obj.status or {}
local ready = nil
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Ready" then ready = c end
end
local generation = (obj.metadata or {}).generation
local seen = (ready or {}).observedGeneration or st.observedGeneration
if ready == nil or (generation ~= nil and seen ~= nil and seen < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to check the latest spec"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "ready"
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
end
return hs
