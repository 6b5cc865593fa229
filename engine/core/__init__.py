"""The torch-free core: the scene, its file formats, cameras, trained features, clicks,
transforms, the training schedule, errors and the one atomic file write. numpy and the standard
library only (plyfile for .ply): the Blender extension imports these modules."""
