-- Argo CD health of a retl Mapping: disabled is Suspended; otherwise its
-- Ready condition, then how its last sync ended.
local hs = {}
local st = obj.status or {}
if obj.spec ~= nil and obj.spec.enabled == false then
  hs.status = "Suspended"
  hs.message = "disabled (spec.enabled: false)"
  return hs
end
local ready = nil
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Ready" then ready = c end
end
local generation = (obj.metadata or {}).generation
if ready == nil or (generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to check the latest spec"
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end
local last = st.lastSync
if last ~= nil and (last.phase == "Failed" or last.phase == "PartiallySuccessful") then
  hs.status = "Degraded"
  hs.message = "last sync " .. (last.name or "") .. " was " .. last.phase
  return hs
end
hs.status = "Healthy"
if last ~= nil then
  hs.message = "ready; last sync " .. (last.name or "") .. " was " .. (last.phase or "started")
else
  hs.message = "ready; no sync yet"
end
return hs
