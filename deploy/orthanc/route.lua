-- Orthanc routes every CR or DX image it receives to the pneumonia DICOM node (the modality
-- "pneumonia" of orthanc.json), except what the node itself sent (its reports are SR and OT
-- anyway). The node's header rules decide what is analysed; its results come back here by
-- C-STORE into the image's own study.
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if (modality == 'CR' or modality == 'DX') and origin['RemoteAet'] ~= 'PNEUMONIA' then
    RestApiPost('/modalities/pneumonia/store', '{"Resources": ["' .. instanceId .. '"], "Asynchronous": true}')
  end
end
